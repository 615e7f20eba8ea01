echo "tools OK ($(cat /opt/monorepo/arch))"
