#!/usr/bin/env bash
# Points every shipped alert's runbook_url, and the dashboard's runbook link, at where you
# host docs/runbook.md (the anchors stay: one section per alert):
#
#   bash scripts/runbook-base.sh https://github.com/YOUR-ORG/backstop/blob/main/docs/runbook.md
#
# Rewrites, in the checkout (or in DIR, the optional second argument): the rule file, its
# PrometheusRule copies, the promtool tests and the dashboard. The repository ships the
# placeholder https://runbooks.example.com/backstop/runbook.md until you run this.
set -euo pipefail
new=${1:?usage: scripts/runbook-base.sh RUNBOOK_URL [DIR]}
dir=${2:-$(dirname "$0")/..}
case "$new" in
  http://* | https://*) ;;
  *) echo "runbook-base.sh: $new is not an http(s) URL" >&2; exit 2 ;;
esac
case "$new" in
  *'#'*) echo "runbook-base.sh: give the page's URL without an #anchor" >&2; exit 2 ;;
esac
cd "$dir"
files=(alerts/backstop.rules.yaml alerts/prometheusrule.yaml deploy/base/prometheusrule.yaml
  alerts/tests/*.yaml dashboards/backstop.json)
# Whatever the base is now (the placeholder, or an earlier run's URL).
current=$(sed -n 's/.*runbook_url: "\([^"#]*\)#.*/\1/p' alerts/backstop.rules.yaml | head -n 1)
if [ -z "$current" ]; then
  echo "runbook-base.sh: no runbook_url in alerts/backstop.rules.yaml" >&2
  exit 1
fi
# perl's \Q...\E quotes the old URL; the new one goes in as a literal via the environment.
OLD=$current NEW=$new perl -pi -e 's/\Q$ENV{OLD}\E/$ENV{NEW}/g' "${files[@]}"
echo "runbook links now point at $new"
