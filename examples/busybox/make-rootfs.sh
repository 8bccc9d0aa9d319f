#!/bin/sh
# make-rootfs.sh DIR: writes a minimal root filesystem around Debian's busybox-static into DIR.
set -eu
dir=${1:?usage: make-rootfs.sh DIR}
bb=/bin/busybox
if ! ldd "$bb" 2>&1 | grep -q "not a dynamic"; then
	echo "make-rootfs.sh: $bb is not Debian's static busybox (apt-get install busybox-static)" >&2
	exit 1
fi
rm -rf "$dir"
mkdir -p "$dir/bin" "$dir/etc" "$dir/root" "$dir/tmp" "$dir/home/app"
chmod 1777 "$dir/tmp"
cp "$bb" "$dir/bin/busybox"
for applet in $("$bb" --list); do
	[ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >"$dir/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' >"$dir/etc/group"
