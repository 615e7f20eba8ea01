. /opt/monorepo/lib/greet.sh
greet "the worker"
