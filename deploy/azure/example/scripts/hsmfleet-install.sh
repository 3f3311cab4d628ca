#!/bin/bash
# hsmfleet-install worker|coordinator — rendered by `hsmfleet deploy azure`, run by cloud-init.
# Settings: /etc/hsmfleet/install.env (written from the template's parameters).
set -euo pipefail
role="${1:?usage: hsmfleet-install worker|coordinator}"
# shellcheck source=/dev/null
. /etc/hsmfleet/install.env
: "${NODE_VERSION:?}" "${HSMFLEET_PACKAGE_URL:?}" "${LUSTRE_CLIENT_PACKAGE:?}" "${AMLFS_MGS_ADDRESS:?}"
mount_point="/lustre"

if ! command -v node >/dev/null || [ "$(node --version)" != "v${NODE_VERSION}" ]; then
  tmp="$(mktemp -d)"
  base="https://nodejs.org/dist/v${NODE_VERSION}"
  file="node-v${NODE_VERSION}-linux-x64.tar.xz"
  curl -fsSL --retry 5 -o "${tmp}/${file}" "${base}/${file}"
  curl -fsSL --retry 5 -o "${tmp}/SHASUMS256.txt" "${base}/SHASUMS256.txt"
  (cd "${tmp}" && grep " ${file}\$" SHASUMS256.txt | sha256sum -c -)
  tar -xJf "${tmp}/${file}" -C /usr/local --strip-components=1 --no-same-owner
  rm -rf "${tmp}"
fi

# The release tarball (npm run release); the native addon builds on install (g++, make, python3).
# (npm 11 asks before running install scripts: allow the package's own addon check.)
npm_config_allow_scripts=hsmfleet npm install -g --no-fund --no-audit "${HSMFLEET_PACKAGE_URL}"
/usr/local/bin/hsmfleet --version

# The AMLFS Lustre client for the running kernel (learn.microsoft.com: "Install client software").
if ! modinfo lustre >/dev/null 2>&1; then
  # shellcheck source=/dev/null
  . /etc/os-release
  curl -fsSL --retry 5 https://packages.microsoft.com/keys/microsoft.asc |
    gpg --dearmor --yes -o /usr/share/keyrings/microsoft-prod.gpg
  echo "deb [arch=amd64 signed-by=/usr/share/keyrings/microsoft-prod.gpg] https://packages.microsoft.com/repos/amlfs-${VERSION_CODENAME}/ ${VERSION_CODENAME} main" \
    >/etc/apt/sources.list.d/amlfs.list
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${LUSTRE_CLIENT_PACKAGE}=$(uname -r)"
fi
mkdir -p "${mount_point}"
if ! grep -q " ${mount_point} lustre " /etc/fstab; then
  echo "${AMLFS_MGS_ADDRESS}@tcp:/lustrefs ${mount_point} lustre noatime,flock,_netdev,x-systemd.requires=network-online.target 0 0" >>/etc/fstab
fi
mountpoint -q "${mount_point}" || mount "${mount_point}"

systemctl daemon-reload
case "${role}" in
  worker)
    systemctl enable --now hsmfleet-worker.service
    ;;
  coordinator)
    # The fleet's streams and buckets (R3), created once as the coordinator user: workers may
    # use them but not create them (docs/security.md).
    set -a
    # shellcheck source=/dev/null
    . /etc/hsmfleet/fleet.env
    set +a
    /usr/local/bin/hsmfleet --workers 0 jobs >/dev/null
    for service in ${HSMFLEET_SERVICES:-}; do
      systemctl enable --now "${service}.service"
    done
    systemctl enable prometheus.service
    systemctl restart prometheus.service
    ;;
  *)
    echo "hsmfleet-install: unknown role ${role}" >&2
    exit 2
    ;;
esac
