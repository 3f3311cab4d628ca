export { startDashboard, DASHBOARD_DEFAULTS } from "./server.js";
export type { Dashboard, DashboardOptions } from "./server.js";
export { ThroughputTracker, DEFAULT_CEILING_BYTES_PER_SECOND } from "./tracker.js";
export type { JobView, Snapshot, TrackerOptions, VmView, WorkerView } from "./tracker.js";
