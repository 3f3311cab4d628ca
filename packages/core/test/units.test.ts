import test from "ava";
import { parseDurationText, parseSizeText } from "../src/index.js";

test("sizes: bare K/M/G are binary, KB decimal, KiB binary; junk and unsafe sizes are refused", (t) => {
  t.is(parseSizeText("4096"), 4096);
  t.is(parseSizeText("8M"), 8 * 1024 ** 2);
  t.is(parseSizeText("1.5GiB"), 1.5 * 1024 ** 3);
  t.is(parseSizeText("500 GB"), 500 * 1000 ** 3);
  t.is(parseSizeText("2p"), 2 * 1024 ** 5);
  t.is(parseSizeText("8 parsecs"), undefined);
  t.is(parseSizeText("-1"), undefined);
  t.is(parseSizeText("99999999P"), undefined);
});

test("durations: a bare number is seconds; m and min are minutes; w and y are weeks and years", (t) => {
  t.is(parseDurationText("30"), 30_000);
  t.is(parseDurationText("500ms"), 500);
  t.is(parseDurationText("5m"), 300_000);
  t.is(parseDurationText("30min"), 1_800_000);
  t.is(parseDurationText("1w"), 7 * 86_400_000);
  t.is(parseDurationText("1y"), 365 * 86_400_000);
  t.is(parseDurationText("1 fortnight"), undefined);
  t.is(parseDurationText(""), undefined);
});
