#!/bin/sh
# kcm-runc front: Docker calls this in place of runc, five or more times per
# container. create and run go to the Python wrapper beside this file
# (kcm-runc-py, kcm_hook.runtime), which adds the kcm hooks to config.json.
# Every other call is exec'd into runc here, with builtins only, when the
# settings leave the runtime to the default: no runtime in kcm-install.json
# ("runtime": null, as kcm-hook install writes it) and no KCM_RUNTIME. In any
# other case the Python wrapper decides, and reports errors, for every call.
case $0 in
    */*) dir=${0%/*} ;;
    *) dir=. ;;
esac
python=$dir/kcm-runc-py

# The subcommand: the first argument that is neither a global flag nor the
# value of one (runc's global flags with values: --root --log --log-format
# --criu --rootless, with one dash or two; --flag=value takes no value after).
command=
value=
for arg do
    if [ -n "$value" ]; then
        value=
        continue
    fi
    case $arg in
        --root|-root|--log|-log|--log-format|-log-format) value=1 ;;
        --criu|-criu|--rootless|-rootless) value=1 ;;
        --) command=--; break ;;
        -?*) ;;
        *) command=$arg; break ;;
    esac
done
case $command in
    create|run|--) exec "$python" "$@" ;;
esac

[ -z "${KCM_RUNTIME-}" ] || exec "$python" "$@"
settings=${KCM_RUNC_CONFIG:-$dir/kcm-install.json}
if [ -e "$settings" ]; then
    text=
    while IFS= read -r line || [ -n "$line" ]; do
        text=$text$line
    done < "$settings" || exec "$python" "$@"
    case $text in
        *'"runtime": "'*|*'"runtime":"'*) exec "$python" "$@" ;;
        *'"runtime": null'*|*'"runtime":null'*) ;;
        *) exec "$python" "$@" ;;
    esac
elif [ -n "${KCM_RUNC_CONFIG-}" ]; then
    exec "$python" "$@"
fi
runc=$(command -v runc) || exec "$python" "$@"
[ "$runc" -ef "$0" ] && exec "$python" "$@"
exec "$runc" "$@"
