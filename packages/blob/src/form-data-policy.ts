/**
 * The Azure SDK's pipeline tests every request body with `body instanceof FormData` (its
 * formDataPolicy). The first touch of the `FormData` global makes Node 20 load its whole fetch
 * implementation (undici: ~30 ms of CPU on an idle machine, 100 ms under load), which no Blob
 * request needs — that was a fixed cost of every command that creates a container (issue 17).
 * Blob requests never carry form data, so the policy is taken out of the client's pipeline.
 */
export const FORM_DATA_POLICY_NAME = "formDataPolicy";

interface CorePipelineLike {
  removePolicy(options: { name?: string }): unknown;
}

/**
 * Removes the SDK's formDataPolicy from the core pipeline the storage SDK keeps in
 * `pipeline._corePipeline` (made with the first client; shared by the clients derived from it).
 * Returns false, and leaves the pipeline as it is, if the SDK no longer has that field.
 */
export const removeFormDataPolicy = (pipeline: unknown): boolean => {
  const core =
    pipeline !== null && typeof pipeline === "object"
      ? ((pipeline as Record<string, unknown>)["_corePipeline"] as CorePipelineLike | undefined)
      : undefined;
  if (core === undefined || typeof core.removePolicy !== "function") return false;
  core.removePolicy({ name: FORM_DATA_POLICY_NAME });
  return true;
};
