import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { runCli } from "./helpers.js";

const NAME_62 = `project-${"a".repeat(54)}`;

test("a 62-character container: export and import say the default log container is too long and name --log-container", async (t) => {
  t.is(NAME_62.length, 62);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const env = { HSMFLEET_STATE_DIR: dir.path, AZURE_STORAGE_CONNECTION_STRING: "" };
  for (const args of [
    ["export", dir.path, "--container", NAME_62],
    ["import", dir.path, "--container", NAME_62, "--mode", "full"],
  ]) {
    const run = await runCli(args, { env });
    t.is(run.code, 2, `${args[0]}: ${run.stderr}`);
    t.regex(
      run.stderr,
      new RegExp(
        `the default log container "${NAME_62}-logs" would be 67 characters; Azure allows at most 63: give --log-container NAME`,
      ),
      args[0],
    );
  }
  // With --log-container given, the check passes (the command goes on; here it fails later on
  // the container that does not exist, not on the name).
  const given = await runCli(
    [
      "export",
      dir.path,
      "--container",
      NAME_62,
      "--log-container",
      "logs",
      "--workers",
      "0",
      "--quiet",
      "--max-errors",
      "-1",
    ],
    { env, timeoutMs: 5_000 },
  );
  t.notRegex(given.stderr, /--log-container NAME/);
});

test("an invalid container name is refused before anything starts, naming the rule", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const run = await runCli(["export", dir.path, "--container", "My_Data"], {
    env: { HSMFLEET_STATE_DIR: dir.path },
  });
  t.is(run.code, 2);
  t.regex(
    run.stderr,
    /--container "My_Data" is not a valid container name: 3-63 lowercase letters, digits and single hyphens/,
  );
  t.notRegex(run.stderr, /Azurite/, "refused before the embedded storage starts");
});
