# Sourced by scripts/bench/gpu-bench and scripts/bench/gpu-check: installs the Python modules named in
# $modules that the machine's Python lacks, from the wheels that scripts/bench/gpu-bench-wheels put
# in $wheels, into $target (not into the machine's Python), and puts $target and the project on
# PYTHONPATH. Nothing is downloaded. Sets $device to cuda or cpu.
# The repository is not installed there: scripts and worker/ import from its root.
export PYTHONPATH="$target:$root${PYTHONPATH:+:$PYTHONPATH}"
missing=()
for module in $modules; do
    "$python" -c "import $module" 2>/dev/null || missing+=("$module")
done
if [ ${#missing[@]} -gt 0 ]; then
    # The wheel of a module is named for its distribution (yaml is PyYAML).
    wanted=("${missing[@]/#yaml/pyyaml}")
    echo "installing ${wanted[*]} from $wheels"
    if "$python" -m pip --version >/dev/null 2>&1; then
        "$python" -m pip install --quiet --no-index --no-deps --find-links "$wheels" \
            --target "$target" "${wanted[@]}"
    else  # no pip: wheels are zip files that run unpacked
        tag="$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
        for name in "${wanted[@]}"; do
            wheel="$(ls "$wheels/$name"-*-py3-none-*.whl "$wheels/$name"-*-py2.py3-none-*.whl \
                     "$wheels/$name"-*-"$tag"-*.whl 2>/dev/null | head -n 1)"
            "$python" -m zipfile -e "$wheel" "$target"
        done
    fi
fi
device="$("$python" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")"
"$python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
