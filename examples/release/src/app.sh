echo "release @VERSION@ ($(cat /opt/release/channel) channel)"
cat /opt/release/build-info
