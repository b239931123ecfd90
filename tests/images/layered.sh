# Sourced by the two-layer app images (n8n-image.sh, pyapps.sh): a big, rarely changing layer
# (an app install copied in), and a small top with the image's contract. Each carries the label
# org.mmstack.test-image.hash, the sha256 of its inputs; an image whose label matches is not
# rebuilt. The caller sets REF (the top image) and NAME (its work directory's name), then calls
# layered_start "$@" once its own inputs are checked.
HERE=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LABEL=org.mmstack.test-image.hash
DOCKER=${DOCKER:-docker}
BASE_REF=mmstack-test/trixie-base:1
STANDIN_REF=mmstack-test/standin:1
log() { echo "[test-images] $*" >&2; }
die() { echo "[test-images] error: $*" >&2; exit 1; }
label_of() { "$DOCKER" image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true; }

# --force rebuilds; one build at a time on this machine; a work directory removed on exit.
layered_start() {
  FORCE=0; [ "${1:-}" = --force ] && FORCE=1
  exec 9>"${TMPDIR:-/tmp}/mmstack-test-images.lock"; flock 9
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/mmstack-$NAME.XXXXXX"); trap 'rm -rf "$work"' EXIT
}
