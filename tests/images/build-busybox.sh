#!/usr/bin/env bash
# Builds a small OCI image archive from Debian's busybox-static, for tests
# and benchmarks that must not reach a public registry.
#   usage: build-busybox.sh OUT.tar [IMAGE_NAME]
# The image has /bin/busybox with its applets linked in /bin, a /www page and
# Cmd `httpd -f -p 8080 -h /www`. The archive is an OCI image layout whose
# index names the image (io.containerd.image.name) so `ctr images import`,
# `edge image import` and `skopeo copy oci-archive:` all take it.
set -euo pipefail
out=${1:?usage: build-busybox.sh OUT.tar [IMAGE_NAME]}
name=${2:-docker.io/edge/busybox:latest}
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && "$busybox" --list >/dev/null 2>&1 || {
  echo "busybox not found: apt-get install busybox-static" >&2
  exit 1
}
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
echo "hello from edge" > "$root/www/index.html"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"

layout=$work/layout
mkdir -p "$layout/blobs/sha256"
blob() { # file -> prints digest hex, moves the file into blobs/
  local hex
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  mv "$1" "$layout/blobs/sha256/$hex"
  echo "$hex"
}

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -9 "$work/layer.tar"
layer_size=$(stat -c %s "$work/layer.tar.gz")
layer=$(blob "$work/layer.tar.gz")

cat > "$work/config.json" <<JSON
{"architecture":"$arch","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["httpd","-f","-p","8080","-h","/www"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created_by":"tests/images/build-busybox.sh"}]}
JSON
config_size=$(stat -c %s "$work/config.json")
config=$(blob "$work/config.json")

cat > "$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer","size":$layer_size}]}
JSON
manifest_size=$(stat -c %s "$work/manifest.json")
manifest=$(blob "$work/manifest.json")

tag=${name##*:}
[ "$tag" = "$name" ] && tag=latest
cat > "$layout/index.json" <<JSON
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$manifest_size,"annotations":{"io.containerd.image.name":"$name","org.opencontainers.image.ref.name":"$tag"}}]}
JSON
echo '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$layout" -cf "$out" oci-layout index.json blobs
echo "$out: $name (sha256:$manifest)"
