#!/bin/bash
# Regenerates the checked-in example deployment (deploy/azure/example): the fleet the planner sizes
# for 7.5 GiB/s of D32ds_v5 workers. test/e2e/deploy-azure-template.test.ts fails when they drift.
set -euo pipefail
cd "$(dirname "$0")/.."
out=deploy/azure/example
rm -rf "${out}"
node packages/cli/bin/hsmfleet.js deploy azure --target 7.5GiB/s --vm-size Standard_D32ds_v5 --output "${out}"
