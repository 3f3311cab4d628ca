import test from "ava";
import { FsOperationError, HsmfleetError, UsageError, errorCode } from "../src/index.js";

test("file system errors name the operation, the path and the cause", (t) => {
  const cause = Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
  const err = new FsOperationError(
    "opendir",
    "/mnt/fs/locked",
    "EACCES",
    "permission denied",
    cause,
  );
  t.is(err.message, "opendir /mnt/fs/locked: EACCES (permission denied)");
  t.is(err.cause, cause);
  t.false(err.retryable);
  t.true(err instanceof HsmfleetError);
  t.is(errorCode(cause), "EACCES");
  t.is(errorCode(new UsageError("x")), "UsageError");
  t.is(errorCode(42), "UNKNOWN");
});
