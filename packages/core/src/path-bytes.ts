/**
 * Raw-byte path helpers. Namespace paths travel as bytes; they are decoded only for display,
 * where invalid UTF-8 bytes are shown as `\xNN` so an admin can still find the file.
 */
const SLASH = 0x2f;

export const joinPathBytes = (parent: Buffer, name: Buffer): Buffer => {
  if (parent.length === 0) return Buffer.from(name);
  const out = Buffer.allocUnsafe(parent.length + 1 + name.length);
  parent.copy(out, 0);
  out[parent.length] = SLASH;
  name.copy(out, parent.length + 1);
  return out;
};

/** Absolute path bytes of a root-relative path. */
export const resolveUnderRoot = (root: Buffer, relative: Buffer): Buffer =>
  relative.length === 0 ? root : joinPathBytes(root, relative);

const isValidUtf8 = (bytes: Buffer): boolean => {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
};

// eslint-disable-next-line no-control-regex
const CONTROL_OR_BACKSLASH = /[\x00-\x1f\x7f\\]/g;

/** Printable form of a path: UTF-8 where valid; other bytes and control characters as `\xNN`. */
export const displayPath = (bytes: Buffer): string => {
  if (isValidUtf8(bytes)) {
    return bytes
      .toString("utf8")
      .replace(CONTROL_OR_BACKSLASH, (c) =>
        c === "\\" ? "\\\\" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
      );
  }
  let out = "";
  let i = 0;
  while (i < bytes.length) {
    // Decode the longest valid UTF-8 run starting at i, escape a single byte otherwise.
    let j = i;
    while (
      j < bytes.length &&
      bytes[j]! < 0x80 &&
      bytes[j]! >= 0x20 &&
      bytes[j] !== 0x5c &&
      bytes[j] !== 0x7f
    )
      j++;
    if (j > i) {
      out += bytes.subarray(i, j).toString("latin1");
      i = j;
      continue;
    }
    const b = bytes[i]!;
    const width = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    if (width > 1 && i + width <= bytes.length && isValidUtf8(bytes.subarray(i, i + width))) {
      out += bytes.subarray(i, i + width).toString("utf8");
      i += width;
      continue;
    }
    out += b === 0x5c ? "\\\\" : `\\x${b.toString(16).padStart(2, "0")}`;
    i += 1;
  }
  return out;
};
