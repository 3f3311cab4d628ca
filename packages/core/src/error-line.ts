/**
 * One error of a summary, naming its path once: `operation path: code message`. Messages made
 * where the error happened often name the path too (a BlobNameError starts with it, a file-system
 * error names the absolute path); that second mention goes.
 */
export const formatErrorLine = (
  e: { path: string; operation: string; code: string; message: string },
  root?: string,
): string => {
  let message = e.message;
  if (e.path !== "" && e.path !== ".") {
    if (message.startsWith(`${e.path}: `)) message = message.slice(e.path.length + 2);
    if (root !== undefined) {
      const abs = `${root.replace(/\/+$/, "")}/${e.path}`;
      message = message.split(` ${abs}`).join("");
      if (message.startsWith(`${abs}: `)) message = message.slice(abs.length + 2);
    }
  }
  return `${e.operation} ${e.path}: ${e.code} ${message}`;
};
