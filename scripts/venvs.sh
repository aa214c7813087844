# Shell functions that scripts/test and scripts/docs source: the venvs under .venvs/.
# shellcheck shell=bash

# Bring venv $1 (for interpreter $2) up to date with the requirements $3...; sets $venv.
prepare_venv() {
    local name=$1 interpreter=$2 stamp
    shift 2
    venv=.venvs/$name
    stamp=$(cat setup.cfg pyproject.toml requirements/*.txt docs/requirements.txt <("$interpreter" -VV) <(echo "$@") | sha256sum)
    stamp=${stamp%% *}
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
        echo "${0##*/}: creating $venv"
        "$interpreter" -m venv --clear "$venv"
    fi
    if [ "$(cat "$venv/.setup-hash" 2>/dev/null)" != "$stamp" ]; then
        echo "${0##*/}: installing into $venv: $*"
        rm -f "$venv/.setup-hash"
        "$venv/bin/python" -m pip install -q "$@"
        echo "$stamp" >"$venv/.setup-hash"
    fi
}

# The test matrix: PYTHON:DJANGO:SCOPE[:OPTIONS] (scripts/test explains the fields).
# The lowest versions setup.cfg declares on the oldest Python and Django, the newest the
# registry serves on the newest; two locked combinations between them run a part, one
# of them with the library's own gunicorn worker.
default_matrix="3.10:5.2:most:lowest 3.13:6.1:all:newest 3.11:5.2:part 3.12:6.0:part:worker"

# Print the name of combination Python $1, Django $2, options $3 (e.g. py3.10-django5.2-lowest).
combination_name() {
    local name="py$1-django$2"
    [[ ",$3," == *,lowest,* ]] && name+=-lowest
    [[ ",$3," == *,newest,* ]] && name+=-newest
    echo "$name"
}

# Print the lock of combination Python $1, Django $2, options $3; nothing for "newest".
combination_lock() {
    [[ ",$3," == *,newest,* ]] && return 0
    echo "requirements/test-$(combination_name "$1" "$2" "$3").txt"
}

# The tools venv (.venvs/tools), on Python 3.12: build, lint, types and the docs,
# installed from the lock (requirements/tools.txt, exact versions; ./scripts/lock
# updates it), so the verdict depends on the commit, not on what was published since.
prepare_tools_venv() {
    prepare_venv tools "$(find_python 3.12)" --no-deps -r requirements/tools.txt
}

# Print the path of an interpreter for Python $1 (e.g. 3.12), or fail saying so.
find_python() {
    local want=$1 candidate root
    root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    for candidate in "$root"/versions/"$want".*/bin/python"$want" "$(command -v "python$want" || true)"; do
        if [ -x "$candidate" ] && "$candidate" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$want'.split('.')))" 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "${0##*/}: Python $want is not installed on this machine (${0##*/} needs it${matrix:+ for the matrix $matrix}). Install it (e.g. pyenv install $want) or set SSE_TEST_MATRIX." >&2
    return 1
}
