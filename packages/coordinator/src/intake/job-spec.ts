/**
 * Job specs submitted as JSON (a Service Bus message to `hsmfleet serve --jobs`): the schema
 * (docs/job-spec.schema.json holds the same, checked by a test) and its validator. A spec is
 * untrusted input: anything unknown or of the wrong type is refused with the field named, and a
 * refused spec never starts anything.
 */

export const JOB_SPEC_KINDS = [
  "export",
  "import",
  "restore",
  "archive",
  "release",
  "verify",
] as const;
export type JobSpecKind = (typeof JOB_SPEC_KINDS)[number];
/** Kinds `hsmfleet serve` runs: every kind a spec may name. */
export const SERVED_KINDS: readonly JobSpecKind[] = JOB_SPEC_KINDS;

export interface JobSpec {
  kind: JobSpecKind;
  /** A name for the job in events (defaults to the message id). */
  name?: string;
  /** export: the tree; import: the target; restore/archive/release/verify: the path. */
  path: string;
  container?: string;
  prefix?: string;
  prefixes?: string[];
  mode?: "namespace" | "full";
  conflict?: "fail" | "skip" | "overwrite-dirty" | "overwrite-always";
  maxErrors?: number;
}

export class JobSpecError extends Error {
  constructor(message: string) {
    super(`job spec: ${message}`);
    this.name = "JobSpecError";
  }
}

/** The JSON schema of a job spec (draft 2020-12). */
export const JOB_SPEC_SCHEMA = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  $id: "https://hsmfleet.dev/schemas/job-spec.schema.json",
  title: "hsmfleet job spec",
  type: "object",
  additionalProperties: false,
  required: ["kind", "path"],
  properties: {
    kind: { enum: [...JOB_SPEC_KINDS] },
    name: { type: "string", minLength: 1, maxLength: 200 },
    path: { type: "string", minLength: 1, pattern: "^/" },
    container: { type: "string", pattern: "^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$" },
    prefix: { type: "string" },
    prefixes: { type: "array", items: { type: "string" }, minItems: 1 },
    mode: { enum: ["namespace", "full"] },
    conflict: { enum: ["fail", "skip", "overwrite-dirty", "overwrite-always"] },
    maxErrors: { type: "integer", minimum: -1 },
  },
  allOf: [
    {
      if: { properties: { kind: { enum: ["export", "import", "verify"] } } },
      then: { required: ["container"] },
    },
  ],
} as const;

const CONTAINER = /^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/;

/** Validates a parsed spec (or its JSON text / bytes); throws JobSpecError naming the field. */
export const validateJobSpec = (body: unknown): JobSpec => {
  let value = body;
  if (value instanceof Uint8Array) value = new TextDecoder("utf-8", { fatal: true }).decode(value);
  if (typeof value === "string") {
    try {
      value = JSON.parse(value) as unknown;
    } catch (err) {
      throw new JobSpecError(`not JSON: ${(err as Error).message}`);
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new JobSpecError("not a JSON object");
  const r = value as Record<string, unknown>;
  const known = Object.keys(JOB_SPEC_SCHEMA.properties);
  for (const k of Object.keys(r))
    if (!known.includes(k)) throw new JobSpecError(`unknown field ${k}`);
  const str = (f: string, required: boolean): string | undefined => {
    const v = r[f];
    if (v === undefined && !required) return undefined;
    if (typeof v !== "string" || v === "")
      throw new JobSpecError(`field ${f} must be a non-empty string`);
    return v;
  };
  const kind = str("kind", true)!;
  if (!(JOB_SPEC_KINDS as readonly string[]).includes(kind)) {
    throw new JobSpecError(
      `field kind must be one of ${JOB_SPEC_KINDS.join(", ")} (got ${JSON.stringify(kind)})`,
    );
  }
  const spec: JobSpec = { kind: kind as JobSpecKind, path: str("path", true)! };
  if (!spec.path.startsWith("/")) throw new JobSpecError("field path must be absolute");
  if (spec.path.split("/").some((s) => s === ".."))
    throw new JobSpecError("field path must not contain '..'");
  const name = str("name", false);
  if (name !== undefined) {
    if (name.length > 200) throw new JobSpecError("field name is longer than 200 characters");
    spec.name = name;
  }
  const container = str("container", false);
  if (container !== undefined) {
    if (!CONTAINER.test(container))
      throw new JobSpecError(
        `field container ${JSON.stringify(container)} is not a container name`,
      );
    spec.container = container;
  } else if (kind === "export" || kind === "import" || kind === "verify") {
    throw new JobSpecError(`field container is required for ${kind}`);
  }
  if (r.prefix !== undefined) {
    if (typeof r.prefix !== "string") throw new JobSpecError("field prefix must be a string");
    spec.prefix = r.prefix;
  }
  if (r.prefixes !== undefined) {
    if (
      !Array.isArray(r.prefixes) ||
      r.prefixes.length === 0 ||
      !r.prefixes.every((p) => typeof p === "string")
    ) {
      throw new JobSpecError("field prefixes must be a non-empty array of strings");
    }
    spec.prefixes = r.prefixes;
  }
  if (r.mode !== undefined) {
    if (r.mode !== "namespace" && r.mode !== "full")
      throw new JobSpecError("field mode must be namespace or full");
    spec.mode = r.mode;
  }
  if (r.conflict !== undefined) {
    const modes = JOB_SPEC_SCHEMA.properties.conflict.enum as readonly string[];
    if (typeof r.conflict !== "string" || !modes.includes(r.conflict))
      throw new JobSpecError(`field conflict must be one of ${modes.join(", ")}`);
    spec.conflict = r.conflict as JobSpec["conflict"] & string;
  }
  if (r.maxErrors !== undefined) {
    if (typeof r.maxErrors !== "number" || !Number.isInteger(r.maxErrors) || r.maxErrors < -1) {
      throw new JobSpecError("field maxErrors must be an integer ≥ -1");
    }
    spec.maxErrors = r.maxErrors;
  }
  return spec;
};
