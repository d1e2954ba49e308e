#!/usr/bin/env bash
# Ray for a lent GPU machine whose Python has none and cannot download it: builds .ray-bundle/ in the checkout
# (git-ignored), to carry with the call that runs `bash benchmarks/gpu.sh ray`, whose task unpacks it.
#
#   bash benchmarks/ray_bundle.sh [RAY_VERSION]     (default: the ray installed here, else 2.60.0)
#
# The machine's working tree may carry 64 MiB, and ray's wheel is 79 MB: the bundle is the wheel unpacked without
# its Java jars and the dashboard's source maps (162 MB), compressed with xz (31 MB for ray 2.60.0), beside the
# wheels of the one dependency the GPU image lacks (jsonschema and its own, with a recent attrs). For CPython 3.12
# on x86-64 Linux (set PYTHON_VERSION for another). Takes about 1 minute on 2 cores (the download, then xz).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-$(python -c "import ray; print(ray.__version__)" 2> /dev/null || echo 2.60.0)}
py=${PYTHON_VERSION:-3.12}
out=.ray-bundle
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out" && mkdir -p "$out"
download() {
  python -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$1" "${@:2}"
}
download "$work" "ray==$version"
download "$out" jsonschema jsonschema-specifications referencing rpds-py attrs
python - "$work"/ray-*.whl "$work/ray" <<'EOF'  # unpacked with each file's mode: the servers must stay executable
import os
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as wheel:
    for info in wheel.infolist():
        path = wheel.extract(info, sys.argv[2])
        if info.external_attr >> 16:
            os.chmod(path, info.external_attr >> 16 & 0o777)
EOF
rm -rf "$work/ray/ray/jars" && find "$work/ray" -name '*.js.map' -delete
tar cf - -C "$work/ray" . | xz -T0 -6 > "$out/ray.tar.xz"
du -ch "$out"/* | tail -1 | sed "s/total/in $out: ray $version for CPython $py/"
