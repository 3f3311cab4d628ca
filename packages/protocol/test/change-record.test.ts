import test from "ava";
import { decodeChangeRecord, encodeChangeRecord, type ChangeRecord } from "../src/index.js";

const record: ChangeRecord = {
  source: "lustre:lustre-MDT0000",
  index: "18446744073709551615",
  type: "UNLNK",
  time: 1_700_000_000_123,
  flags: 0x3,
  target: "[0x200000402:0x1:0x0]",
  parent: "[0x200000007:0x1:0x0]",
  name: "a.dat",
  hsmExists: true,
  lastLink: true,
  path: "dir/a.dat",
};

test("a change record survives encode and decode unchanged", (t) => {
  t.deepEqual(decodeChangeRecord(encodeChangeRecord(record)), record);
});

test("decode names the field that is wrong", (t) => {
  const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
  t.throws(() => decodeChangeRecord(enc({ ...record, type: "BOGUS" })), { message: /field type/ });
  t.throws(() => decodeChangeRecord(enc({ ...record, index: "-1" })), { message: /field index/ });
  t.throws(() => decodeChangeRecord(enc({ ...record, hsmExists: "yes" })), {
    message: /field hsmExists/,
  });
  t.throws(() => decodeChangeRecord(new Uint8Array([0xff, 0xfe])), { message: /not JSON/ });
  t.throws(() => decodeChangeRecord(enc([1, 2])), { message: /field source/ });
});
