import test from "ava";
import { bytesAboveLow, bytesToFree, parseLfsDf } from "../src/index.js";

const LFS_DF = `UUID                   1K-blocks        Used   Available Use% Mounted on
lustre-MDT0000_UUID      2210560        2560     2005504   1% /mnt/lustre[MDT:0]
lustre-OST0000_UUID      1000000      900000      100000  90% /mnt/lustre[OST:0]
lustre-OST0001_UUID      1000000      500000      500000  50% /mnt/lustre[OST:1]

filesystem_summary:      2000000     1400000      600000  70% /mnt/lustre
`;

test("lfs df: one sample per OST; the MDT and the summary are not OSTs", (t) => {
  const osts = parseLfsDf(LFS_DF);
  t.deepEqual(
    osts.map((o) => [o.target, o.percent]),
    [
      ["lustre-OST0000", 90],
      ["lustre-OST0001", 50],
    ],
  );
  t.is(osts[0]!.usedBytes, 900000 * 1024);
});

test("watermarks: bytes to free on the fullest OST above high, down to low", (t) => {
  const osts = parseLfsDf(LFS_DF);
  const trigger = { of: "ost" as const, highPercent: 85, lowPercent: 80 };
  t.is(bytesToFree(osts, trigger), 100000 * 1024);
  t.is(bytesToFree(osts, { ...trigger, highPercent: 95 }), 0, "no OST above high: no run");
  t.is(bytesAboveLow(osts, trigger), 100000 * 1024);
});
