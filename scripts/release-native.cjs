// Install script of the hsmfleet release package (scripts/release.mjs): loads the prebuilt
// native addon of @hsmfleet/fs (Node-API 8, built on the release machine) and, when this machine
// cannot load it (another architecture or C library), rebuilds it from the shipped sources with
// node-gyp (npm puts node-gyp on the PATH of install scripts; it needs g++, make and python3).
"use strict";
const { spawnSync } = require("node:child_process");
const { join } = require("node:path");

const fsPackage = join(__dirname, "..", "node_modules", "@hsmfleet", "fs");
const addons = ["hsmfleet_fs.node", "hsmfleet_crc64.node"].map((a) =>
  join(fsPackage, "build", "Release", a),
);

const loads = () => {
  try {
    for (const addon of addons) require(addon);
    return true;
  } catch (err) {
    process.stderr.write(
      `hsmfleet: the prebuilt native addon does not load here (${err.message}); building it\n`,
    );
    return false;
  }
};

if (!loads()) {
  const r = spawnSync("node-gyp", ["rebuild", "--loglevel=warn"], {
    cwd: fsPackage,
    stdio: "inherit",
  });
  if (r.status !== 0 || !loads()) {
    process.stderr.write(
      `hsmfleet: could not build the native addon in ${fsPackage} (install g++, make and python3, then reinstall)\n`,
    );
    process.exit(1);
  }
}
