# The load balancer in front of the adapter replicas: Debian's nginx, run
# as www-data (it listens on 8080, keeps its pid and buffers in /tmp).
# Build from the repository root:  docker build -f docker/nginx.Dockerfile .
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx curl \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/nginx/sites-enabled/default
COPY docker/nginx.conf /etc/nginx/nginx.conf
USER www-data
EXPOSE 8080
# Healthy when it serves the API: /health of an adapter, through nginx.
HEALTHCHECK --interval=5s --timeout=3s --retries=5 \
    CMD curl -fsS http://127.0.0.1:8080/health >/dev/null || exit 1
ENTRYPOINT ["nginx", "-e", "stderr", "-g", "daemon off;"]
