# Shared by the bench scripts (sourced): builds deploy and the example app, and prepares a bench
# project for the example app (app bench-app, port 18190) as the node user, under $WORK.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
RUNS=${RUNS:-5}
NODE_USER=${DEPLOY_NODE_USER:-deploy-bench}
export DEPLOY_NODE_USER=$NODE_USER   # scripts/as-node-user runs as it
cargo build --quiet --release --locked -p deploy
DEPLOY_BIN="${CARGO_TARGET_DIR:-target}/release/deploy" scripts/node-setup "$NODE_USER" >/dev/null
scripts/build-example
HOME_DIR=$(getent passwd "$NODE_USER" | cut -d: -f6)
WORK=/tmp/deploy-bench
BIN=$WORK/deploy
STATE=$HOME_DIR/bench/bench-app/.deploy/state.json
# The bench app's units (the naming scheme: <app>_<env>).
UNIT=bench-app_prod.service
GAP_UNIT=bench-app_prod_gap.service

mkdir -p "$WORK"; install -m 0755 "${CARGO_TARGET_DIR:-target}/release/deploy" "$BIN"
as_user() { local d="${RUN_DIR:-$WORK/project}"; [ -d "$d" ] || d=/; "$REPO/scripts/as-node-user" "$d" "$@"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# timed OUT COMMAND...: runs COMMAND as the node user (in RUN_DIR, default the bench project),
# appending its time in ms to OUT, as that user's shell times it: the harness's own switch to
# the user (setpriv, env, sh: about 15 ms) is not the command's, and is left out of every figure,
# the floors' included. The command's output goes to standard output; its status is returned.
timed() {
  local out=$1; shift
  as_user sh -c 's=$(date +%s%N); "$@"; rc=$?; e=$(date +%s%N)
    echo $(( (e - s) / 1000000 )) >&3; exit $rc' _ "$@" 3>>"$out"
}
last_gap() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"][-1]["gap_ms"])' "$STATE"; }
median() { python3 -c 'import statistics,sys; xs=[int(l) for l in open(sys.argv[1]) if l.strip()]; print(f"{statistics.median(xs):.0f} ({min(xs)}-{max(xs)})")' "$1"; }

# prepare_project [EXTRA_YAML]: a fresh project and a fresh app directory, set up.
prepare_project() {
  as_user systemctl --user stop "$UNIT" bench-app_prod.socket bench-app.service 2>/dev/null || true
  umount "$HOME_DIR/bench/bench-app" 2>/dev/null || true
  rm -rf "$WORK/project" "$HOME_DIR/bench/bench-app" && mkdir -p "$WORK/project/dist"
  cp -r examples/app/Containerfile examples/app/assets "$WORK/project/"
  cp examples/app/dist/example-app "$WORK/project/dist/"
  sed -e 's/^app: example-app/app: bench-app/' -e 's/port: 18080/port: 18190/' \
      -e 's#path: ~/web/example-app#path: ~/bench/bench-app#' -e '/^build:/,/^  command:/d' \
      examples/app/deploy.yaml \
    | awk '/^traefik:/ {skip=1; next} /^[a-z]/ {skip=0} !skip' > "$WORK/project/deploy.yaml"
  printf '%s' "${1:-}" >> "$WORK/project/deploy.yaml"
  chown -R "$NODE_USER:" "$WORK"
  [ "${FS:-}" != xfs ] || xfs_app_dir
  as_user "$BIN" -q setup prod
}

# xfs_app_dir: the bench app's directory on a fresh XFS with reflinks (a loop file of XFS_MB,
# default 6000), as RHEL's and Rocky's default file system is (FS=xfs).
xfs_app_dir() {
  local d=$HOME_DIR/bench/bench-app img=$WORK/app-xfs.img
  command -v mkfs.xfs >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xfsprogs >/dev/null
  mkdir -p "$d"; rm -f "$img"; truncate -s "${XFS_MB:-6000}M" "$img"
  mkfs.xfs -q -f -m reflink=1 "$img"; mount -o loop "$img" "$d"; chown "$NODE_USER:" "$d" "$HOME_DIR/bench"
}

# touch_release N: changes one asset, so that every release differs from the one before.
touch_release() {
  echo "run $1" > "$WORK/project/assets/run.txt"
  chown "$NODE_USER:" "$WORK/project/assets/run.txt"
}

# floor IMAGE PORT OUT [ARG...]: the floor of a gap, measured RUNS times with plain Podman as the node
# user: `podman run` of IMAGE until its first 2xx on 127.0.0.1:PORT (OUT.start), and `podman stop`
# of that running container (OUT.stop), in milliseconds, one figure a line.
floor() {
  local image=$1 port=$2 out=$3 data=$WORK/floor-data
  shift 3   # the rest: more `podman run` arguments (e.g. --init, --env)
  : > "$out.start"; : > "$out.stop"
  mkdir -p "$data"; chown "$NODE_USER:" "$data"
  for i in $(seq 1 "$RUNS"); do
    as_user podman rm -f -t 0 deploy-bench-floor >/dev/null 2>&1 || true
    timed "$out.start" sh -c 'port=$1; shift
      podman run -d --rm --name deploy-bench-floor -p "127.0.0.1:$port:8080" "$@" >/dev/null || exit 1
      until curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; do sleep 0.005; done' \
      _ "$port" -v "$data:/app/data" "$@" "$image"
    timed "$out.stop" podman stop -t 10 deploy-bench-floor >/dev/null
  done
  paste -d' ' "$out.start" "$out.stop" | python3 -c 'import sys
for l in sys.stdin: print(sum(int(x) for x in l.split()))' > "$out.sum"
}

# build_floor RELEASE_DIR N OUT: the floor of a release's build, plain `podman build --layers=true`
# (Podman's own default, as a user builds by hand; deploy builds a small context that runs nothing
# with --layers=false) of a copy of RELEASE_DIR with one asset changed, as the node user, in ms,
# appended to OUT. The image goes again.
build_floor() {
  local src=$1 n=$2 out=$3 dir=$WORK/build-floor-dir t
  rm -rf "$dir"; cp -a "$src" "$dir"; rm -rf "$dir/.deploy"
  echo "floor $n" > "$dir/assets/run.txt"; chown -R "$NODE_USER:" "$dir"
  timed "$out" podman build -q --layers=true -t "localhost/bench-build-floor:$n" "$dir" >/dev/null
  as_user podman image rm "localhost/bench-build-floor:$n" >/dev/null
}

# gap_parts JSON PREFIX: from a `--json` release or rollback's step events, the ms of the swap's
# stop job, start job and health check, appended to PREFIX.stop, PREFIX.start, PREFIX.health.
gap_parts() { python3 - "$1" "$2" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
steps = [e for e in events if e.get("event") == "step"]
def last(prefix):
    ms = [e["ms"] for e in steps if e["step"].startswith(prefix)]
    return ms[-1] if ms else 0
for part, prefix in (("stop", "Stopping "), ("start", "Starting "), ("health", "Health check ")):
    open(f"{sys.argv[2]}.{part}", "a").write(f"{last(prefix)}\n")
PY
}

# step_ms JSON PREFIX: the ms of the last step event whose label begins with PREFIX (0 if none).
step_ms() { python3 - "$1" "$2" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ms = [e["ms"] for e in events if e.get("event") == "step" and e["step"].startswith(sys.argv[2])]
print(ms[-1] if ms else 0)
PY
}

# beyond A B: median(A) - median(B), in ms: what an end-to-end time costs beyond its gap.
beyond() { python3 -c 'import statistics as s,sys
a=[int(l) for l in open(sys.argv[1]) if l.strip()]; b=[int(l) for l in open(sys.argv[2]) if l.strip()]
print(f"{s.median(a)-s.median(b):.0f}")' "$1" "$2"; }

# ratio A B: A / B as 1.23.
ratio() { python3 -c 'import statistics as s,sys
a=[int(l) for l in open(sys.argv[1]) if l.strip()]; b=[int(l) for l in open(sys.argv[2]) if l.strip()]
print(f"{s.median(a)/s.median(b):.2f}")' "$1" "$2"; }
