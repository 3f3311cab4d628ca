/**
 * Prometheus on the coordinator VM: the workers of the scale set found by Azure service discovery
 * (azure_sd_configs with the VMs' managed identity, kept by scale-set name), and the coordinator's
 * services. The subscription and resource group are the deployment's own: the template passes
 * `subscription().subscriptionId` and `resourceGroup().name`, so no one types them in.
 */
import type { AzureDeployInputs } from "./inputs.js";
import { COORDINATOR_SERVICES } from "./systemd-units.js";
import type { Expr } from "./arm-expressions.js";

/** Where the workers are: strings, or ARM expressions when the template fills them in. */
export interface PrometheusPlace {
  subscriptionId: string | Expr;
  resourceGroup: string | Expr;
}

/** Name of the worker scale set. */
export const workerScaleSetName = (inputs: AzureDeployInputs): string =>
  `${inputs.namePrefix}-workers`;

export const prometheusConfig = (
  inputs: AzureDeployInputs,
  place: PrometheusPlace,
): Record<string, unknown> => ({
  global: { scrape_interval: "5s", evaluation_interval: "15s" },
  scrape_configs: [
    {
      job_name: "hsmfleet-workers",
      metrics_path: "/metrics",
      azure_sd_configs: [
        {
          environment: "AzurePublicCloud",
          authentication_method: "ManagedIdentity",
          subscription_id: place.subscriptionId,
          resource_group: place.resourceGroup,
          port: inputs.workerMetricsPort,
          refresh_interval: "30s",
        },
      ],
      relabel_configs: [
        {
          source_labels: ["__meta_azure_machine_scale_set"],
          regex: `(?i)${workerScaleSetName(inputs)}`,
          action: "keep",
        },
        { source_labels: ["__meta_azure_machine_name"], target_label: "vm" },
        { target_label: "fleet", replacement: inputs.namePrefix },
      ],
    },
    {
      job_name: "hsmfleet-coordinator",
      metrics_path: "/metrics",
      static_configs: [
        {
          targets: COORDINATOR_SERVICES.filter((s) => s.command !== "dashboard").map(
            (_, i) => `localhost:${inputs.coordinatorMetricsPort + i}`,
          ),
          labels: { fleet: inputs.namePrefix },
        },
      ],
    },
  ],
});
