import Long from "long";
import protobuf from "protobufjs/minimal.js";

// uint64/int64 fields decode as Long (never as a lossy float): we install long.js explicitly because
// protobufjs' own lookup uses require(), which an ESM bundle may not have.
protobuf.util.Long = Long;
protobuf.configure();

export class Uint64RangeError extends RangeError {
  constructor(field: string, value: string) {
    super(
      `${field} = ${value} does not fit in a JavaScript number without loss (max ${Number.MAX_SAFE_INTEGER})`,
    );
    this.name = "Uint64RangeError";
  }
}

type LongLike = Long | number | null | undefined;

/** Exact number from a 64-bit field; throws rather than round. */
export const toSafeNumber = (value: LongLike, field: string): number => {
  if (value === null || value === undefined) return 0;
  if (typeof value === "number") return value;
  // By the high 32 bits (Long's own greaterThan/lessThan make a Long of each bound: ~60 objects
  // a decoded item result, the coordinator's largest allocation, issue 22). 2^53 − 1 is high
  // 0x1fffff, low 0xffffffff; −(2^53 − 1) is high −0x200000, low 1.
  const high = value.unsigned ? value.high >>> 0 : value.high | 0;
  if (high > 0x1fffff || high < -0x200000 || (high === -0x200000 && value.low >>> 0 === 0))
    throw new Uint64RangeError(field, value.toString());
  return value.toNumber();
};

/** From the two 32-bit halves (no decimal text in between: this runs for every cookie on the bus). */
export const toBigInt = (value: LongLike): bigint => {
  if (value === null || value === undefined) return 0n;
  if (typeof value === "number") return BigInt(value);
  const bits = (BigInt(value.high >>> 0) << 32n) | BigInt(value.low >>> 0);
  return value.unsigned ? bits : BigInt.asIntN(64, bits);
};

/** The low 64 bits of `value` (two's complement for negatives, as Long.fromString gives them). */
export const fromBigInt = (value: bigint, unsigned = true): Long =>
  Long.fromBits(
    Number(BigInt.asUintN(32, value)),
    Number(BigInt.asUintN(32, value >> 32n)),
    unsigned,
  );

export const fromNumber = (value: number, field: string, unsigned = true): Long => {
  if (!Number.isSafeInteger(value)) throw new Uint64RangeError(field, String(value));
  return Long.fromNumber(value, unsigned);
};
