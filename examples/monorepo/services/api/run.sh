. /opt/monorepo/lib/greet.sh
greet "the API"
