#!/usr/bin/env bash
# udev/70-dojang-tokens.rules, checked by a small parser: systemd 252 (Debian 12) has no
# `udevadm verify`, and `udevadm test` reads only the system's rules directories and needs a real
# device, so it cannot check a file that is not installed. Where `udevadm verify` exists (systemd
# 253 and later) it runs too.
# The parser: every line is blank, a comment, or a rule of comma-separated KEY[{attr}]OP"value"
# items with known keys and the operators each allows; every GOTO has its LABEL; USB IDs are four
# lower-case hex digits (udev compares sysfs text, which is lower case); and the rules do what
# they are for: uaccess for CCID (interface class 0b) and the known vendors, and the systemd user
# service trigger. It is run on broken samples first, so a checker that accepts anything fails.
set -euo pipefail
rules=$1

match_keys='ACTION|SUBSYSTEM|SUBSYSTEMS|KERNEL|KERNELS|DRIVER|DRIVERS|DEVPATH|TAGS|ATTR|ATTRS|ENV|TEST|PROGRAM|RESULT|CONST'
assign_keys='TAG|ENV|GOTO|LABEL|RUN|IMPORT|MODE|OWNER|GROUP|SYMLINK|NAME|OPTIONS|ATTR|SECLABEL'
with_attribute='ATTR|ATTRS|ENV|TEST|IMPORT|RUN|CONST|SECLABEL'

# Prints one line per problem; returns 1 if there was any.
check_rules() {
  local file=$1 number=0 problems=0 line item key attribute operator value
  local -A labels=() gotos=()
  while IFS= read -r line || [ -n "$line" ]; do
    number=$((number + 1))
    [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
    if [[ $line =~ ,[[:space:]]*$ ]]; then
      echo "$file:$number: the rule ends with a comma"; problems=$((problems + 1)); continue
    fi
    local rest=$line
    while [ -n "$rest" ]; do
      # One item: KEY, optional {attribute}, operator, double-quoted value without quotes inside.
      if ! [[ $rest =~ ^[[:space:]]*([A-Z_]+)(\{([^}]*)\})?(==|!=|\+=|-=|:=|=)\"([^\"]*)\"[[:space:]]*(,(.*))?$ ]]; then
        echo "$file:$number: not a KEY{attr}OP\"value\" item: ${rest}"; problems=$((problems + 1)); break
      fi
      key=${BASH_REMATCH[1]} attribute=${BASH_REMATCH[3]} operator=${BASH_REMATCH[4]} value=${BASH_REMATCH[5]}
      rest=${BASH_REMATCH[7]:-}
      if [[ ${BASH_REMATCH[6]:-} == , && -z ${rest//[[:space:]]/} ]]; then
        echo "$file:$number: the rule ends with a comma"; problems=$((problems + 1))
      fi
      if [[ $operator == "==" || $operator == "!=" ]]; then
        [[ $key =~ ^($match_keys)$ ]] || { echo "$file:$number: $key cannot be matched ($operator)"; problems=$((problems + 1)); }
      else
        [[ $key =~ ^($assign_keys)$ ]] || { echo "$file:$number: $key cannot be assigned ($operator)"; problems=$((problems + 1)); }
      fi
      if [[ $key =~ ^($with_attribute)$ ]]; then
        [ -n "$attribute" ] || { echo "$file:$number: $key needs {attribute}"; problems=$((problems + 1)); }
      elif [ -n "$attribute" ]; then
        echo "$file:$number: $key takes no {attribute}"; problems=$((problems + 1))
      fi
      case "$key:$attribute" in
        ATTR:idVendor | ATTRS:idVendor | ATTR:idProduct | ATTRS:idProduct)
          [[ $value =~ ^[0-9a-f]{4}$ ]] || { echo "$file:$number: $attribute \"$value\" is not four lower-case hex digits"; problems=$((problems + 1)); } ;;
      esac
      [[ $key == LABEL ]] && labels[$value]=1
      [[ $key == GOTO ]] && gotos[$value]=$number
    done
  done < "$file"
  for target in "${!gotos[@]}"; do
    [ -n "${labels[$target]:-}" ] || { echo "$file:${gotos[$target]}: GOTO \"$target\" has no LABEL"; problems=$((problems + 1)); }
  done
  [ "$problems" -eq 0 ]
}

failures=0
work=$(mktemp -d /tmp/dojang-udev-XXXXXX)
trap 'rm -rf "$work"' EXIT

# The checker rejects each of these.
declare -a broken=(
  'ATTR{idVendor}=="1050" TAG+="uaccess"'
  'ATTR{idVendor}=="1050", TAG+="uaccess",'
  'ATTR{idVendor}=="105", TAG+="uaccess"'
  'ATTR{idVendor}=="096E", TAG+="uaccess"'
  'ATTR{idVendor}=="1050", TAG=="uaccess"'
  'ATRS{idVendor}=="1050", TAG+="uaccess"'
  'ATTR{idVendor}=="1050", GOTO="nowhere"'
  'ENV="x"'
  'ATTR{idVendor}=="1050, TAG+="uaccess"'
)
for sample in "${broken[@]}"; do
  printf '%s\n' "$sample" > "$work/broken.rules"
  if check_rules "$work/broken.rules" >/dev/null; then
    echo "FAIL: the checker accepted: $sample" >&2
    failures=$((failures + 1))
  fi
done

if check_rules "$rules"; then
  echo "ok: every line of $(basename "$rules") is a comment or a well-formed rule"
else
  failures=$((failures + 1))
fi

# What the rules are for.
expect() {  # description, extended regex
  if grep -Eq "$2" "$rules"; then
    echo "ok: $1"
  else
    echo "FAIL: $1 (no line matches $2)" >&2
    failures=$((failures + 1))
  fi
}
expect "CCID devices (interface class 0b) are matched" 'ENV\{ID_USB_INTERFACES\}=="\*:0b\?\?\?\?:\*"'
expect "Yubico (1050) is matched" 'ATTR\{idVendor\}=="1050"'
expect "Feitian (096e) is matched" 'ATTR\{idVendor\}=="096e"'
expect "the logged-in user gets access (uaccess)" '^TAG\+="uaccess"'
expect "the device pulls in the user's dojangd.service" 'TAG\+="systemd", ENV\{SYSTEMD_USER_WANTS\}\+="dojangd.service"'
expect "only add and change events" '^ACTION!="add\|change", GOTO='

if command -v udevadm >/dev/null && udevadm verify --help >/dev/null 2>&1; then
  if udevadm verify --resolve-names=never "$rules"; then
    echo "ok: udevadm verify"
  else
    failures=$((failures + 1))
  fi
else
  echo "note: no \`udevadm verify\` here (systemd < 253 or no udev); the parser above is the check"
fi

[ "$failures" -eq 0 ]
