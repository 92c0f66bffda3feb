# Sanity check run by "builds image check" over SSH as the guest user.
# Every line prints what it checked; any failure stops the script.
set -eu
echo "user: $(id -un) (uid $(id -u)), home $HOME, shell $(getent passwd "$(id -un)" | cut -d: -f7)"
test "$(id -un)" = build
test "$HOME" = /home/build
sudo -n true && echo "sudo: passwordless, ok"
command -v bash >/dev/null && echo "bash: $(bash -c 'echo $BASH_VERSION')"
echo "git: $(git --version)"
echo "git identity: $(git config --global user.name) <$(git config --global user.email)>"
echo "kernel: $(uname -r), $(nproc) cpu, $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) MiB"
echo "apt sources:"
cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -E '^(deb |URIs:|Suites:)' | sed 's/^/  /' || true
# what manifests written for builds.sr.ht call without a packages: line
for t in make cc gcc curl python3 hg gpg ssh; do
	command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 1; }
done
echo "tools: make cc gcc curl python3 hg gpg ssh"
sudo sh -c 'command -v locale-gen' >/dev/null && echo "locale-gen: ok"
