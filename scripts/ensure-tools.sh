#!/usr/bin/env bash
# Install the monitoring tools the tests run for real (Debian packages) when they are missing:
# prometheus (promtool), prometheus-alertmanager (amtool), prometheus-node-exporter,
# victoria-metrics, logrotate (the compose stack rotates the multi-worker log file with it),
# chromium and its driver.
set -euo pipefail
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v prometheus-node-exporter >/dev/null 2>&1 || missing+=(prometheus-node-exporter)
# Long-term metrics: Prometheus remote_writes to it in the replica test (tests/e2e/test_replicas.py).
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] || missing+=(logrotate)
# The built-in dashboard is tested in a real headless browser.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# The spool's test watches its fdatasync calls: on disk before the answer.
command -v strace >/dev/null 2>&1 || missing+=(strace)
# kubectl renders deploy/k8s/ (tests/deploy/test_k8s.py). Debian's kubernetes-client is 1.20,
# without kustomize v5, so it is not installed from here: say what to do instead.
if ! command -v kubectl >/dev/null 2>&1; then
    echo "ensure-tools: kubectl is missing; tests/deploy/test_k8s.py will fail until it is there." >&2
    echo "  Install kubectl 1.27+ (kustomize v5): https://kubernetes.io/docs/tasks/tools/" >&2
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "ensure-tools: installing ${missing[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
# Try the package lists already on the machine first; refresh them only if that fails.
if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
