# Sourced by the services.
greet() {
    cat /opt/monorepo/lib/banner.txt
    echo "hello from $1 ($(cat /opt/monorepo/arch))"
}
