import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import { chromium } from "playwright-core";
import { contentOf, freePort, tempDir } from "@hsmfleet/testkit";
import { runCli, spawnCli, startBus, startStorage, waitFor } from "./helpers.js";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = fileURLToPath(new URL("../../artifacts/", import.meta.url));

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium)
  console.warn(`${CHROMIUM} not found (Debian package \`chromium\`): skipping the dashboard test`);

(haveChromium ? test : test.skip)(
  "the dashboard in headless Chromium shows live throughput, the ceiling line and per-VM rows during an export",
  async (t) => {
    const dir = await tempDir();
    t.teardown(() => dir.cleanup());
    const root = join(dir.path, "tree");
    await mkdir(root);
    for (let i = 0; i < 8; i++)
      await writeFile(
        join(root, `f${i}.bin`),
        contentOf(i, Buffer.from(`f${i}`), 48 * 1024 * 1024),
      );
    const azurite = await startStorage(t);
    const { server } = await startBus(t);
    const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
    for (const vm of ["vm-a", "vm-b"]) {
      const worker = spawnCli(["--nats", server.url, "worker", "--vm-name", vm], { env });
      t.teardown(() => {
        worker.kill("SIGKILL");
      });
    }
    const port = await freePort();
    const dashboard = spawnCli([
      "--nats",
      server.url,
      "dashboard",
      "--port",
      String(port),
      "--interval",
      "500",
    ]);
    t.teardown(() => {
      dashboard.kill("SIGKILL");
    });
    let out = "";
    dashboard.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    await waitFor("the dashboard to listen", () => out.includes("dashboard at"));

    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
    t.teardown(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1000, height: 1100 } });
    await page.goto(`http://127.0.0.1:${port}/`);
    const rows = page.locator("#vms tbody tr");
    await waitFor("both VMs on the page", async () => (await rows.count()) === 2);

    const exporting = runCli(
      ["--nats", server.url, "--workers", "0", "export", root, "--container", "dash", "--quiet"],
      { env },
    );
    const total = page.locator("#total");
    await waitFor(
      "non-zero throughput on the page",
      async () => Number(await total.getAttribute("data-bps")) > 0,
      60_000,
    );
    const shown = {
      total: Number(await total.getAttribute("data-bps")),
      totalText: (await total.textContent()) ?? "",
      share: (await page.locator("#share").textContent()) ?? "",
      ceilingY: Number(await page.locator("#ceiling-line").getAttribute("y1")),
      ceilingLabel: (await page.locator("#ceiling-label").textContent()) ?? "",
      series: (await page.locator("#series").getAttribute("points")) ?? "",
      vms: await Promise.all((await rows.all()).map((r) => r.getAttribute("data-vm"))),
      jobs: await page.locator("#jobs tbody tr").count(),
    };
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
    t.log(
      `screenshot: ${join(ARTIFACTS, "dashboard.png")}; fleet ${shown.totalText}, ${shown.share}`,
    );

    t.true(shown.total > 0);
    t.regex(shown.totalText, /[KMG]iB\/s$/);
    t.regex(shown.share, /^\d+\.\d %$/);
    // The ceiling line is drawn inside the chart, labelled with the default 7.5 GiB/s; a fleet far
    // below it (Azurite moves MiB/s) gets a scale of its own, the ceiling marked above it.
    t.true(shown.ceilingY > 0 && shown.ceilingY < 280, String(shown.ceilingY));
    t.is(shown.ceilingLabel, "ceiling 7.50 GiB/s ↑ above this scale");
    t.true(shown.series.split(" ").length >= 2);
    const highest = Math.min(...shown.series.split(" ").map((p) => Number(p.split(",")[1])));
    t.true(highest < (14 + 250) / 2, `the throughput line reaches the upper half (y ${highest})`);
    t.deepEqual(shown.vms, ["vm-a", "vm-b"]);
    t.true(shown.jobs >= 1);
    const run = await exporting;
    t.is(run.code, 0, run.stderr);
  },
);
