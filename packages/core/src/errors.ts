/** Base of every hsmfleet error: says whether retrying the same operation may succeed. */
export class HsmfleetError extends Error {
  readonly retryable: boolean;
  constructor(message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "HsmfleetError";
    this.retryable = options?.retryable ?? false;
  }
}

/** A file system call failed on one path. Message: `<op> <path>: <code> <text>`. */
export class FsOperationError extends HsmfleetError {
  readonly path: string;
  readonly operation: string;
  readonly code: string;
  constructor(operation: string, path: string, code: string, detail?: string, cause?: unknown) {
    super(`${operation} ${path}: ${code}${detail ? ` (${detail})` : ""}`, { cause });
    this.name = "FsOperationError";
    this.operation = operation;
    this.path = path;
    this.code = code;
  }
}

/** Bad command-line input or configuration; the CLI prints the message and exits 2. */
export class UsageError extends HsmfleetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "UsageError";
  }
}

/** A required external program (nats-server, lfs, …) is missing or failed to start. */
export class DependencyError extends HsmfleetError {
  constructor(message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(message, options);
    this.name = "DependencyError";
  }
}

/** A job could not be found, started or continued. */
export class JobError extends HsmfleetError {
  readonly jobId: string;
  constructor(jobId: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "JobError";
    this.jobId = jobId;
  }
}

/** `code` of a Node system error (ENOENT, EACCES, …), or the error's name otherwise. */
export const errorCode = (err: unknown): string => {
  if (err && typeof err === "object" && "code" in err && typeof err.code === "string")
    return err.code;
  if (err instanceof Error) return err.name;
  return "UNKNOWN";
};

export const errorMessage = (err: unknown): string =>
  err instanceof Error ? err.message : typeof err === "string" ? err : JSON.stringify(err);

/**
 * An HSM request the file's state does not allow (Lustre's rules): "release of /x refused: file is
 * dirty (0xb exists dirty archived); archive it first". Not retryable.
 */
export class HsmRefusedError extends HsmfleetError {
  readonly path: string;
  readonly operation: string;
  readonly reason: string;
  constructor(operation: string, path: string, reason: string, message: string) {
    super(message);
    this.name = "HsmRefusedError";
    this.operation = operation;
    this.path = path;
    this.reason = reason;
  }
}
