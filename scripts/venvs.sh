# Shell functions that scripts/test and scripts/docs source: the venvs under .venvs/.
# shellcheck shell=bash

# Bring venv $1 (for interpreter $2) up to date with the requirements $3...; sets $venv.
prepare_venv() {
    local name=$1 interpreter=$2 stamp
    shift 2
    venv=.venvs/$name
    stamp=$(cat setup.cfg pyproject.toml <("$interpreter" -VV) <(echo "$@") | sha256sum)
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

# The tools venv (.venvs/tools) for interpreter $1: build, lint, types and the docs.
prepare_tools_venv() {
    prepare_venv tools "$1" build twine ruff==0.17.6 mypy==2.4.1 django-stubs==6.1.2 \
        'Django~=5.2.0' 'redis>=5.0' 'gevent>=24.10.1' 'gunicorn>=23' \
        'prometheus_client>=0.20' 'sphinx~=9.0' 'furo>=2025.12.19'
}
