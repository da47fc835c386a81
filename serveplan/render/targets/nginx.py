"""Load-balancer config for an existing nginx: one upstream over the replicas, least_conn, streaming-friendly."""

from __future__ import annotations

from serveplan.render.targets.common import Deployment, header


def nginx_conf(dep: Deployment, servers: list[str]) -> str:
    upstream = "".join(f"        server {s} max_fails=3 fail_timeout=10s;\n" for s in servers)
    return (header(dep) +
            "events {}\n"
            "http {\n"
            "    upstream serveplan_replicas {\n"
            "        least_conn;\n" + upstream +
            "    }\n"
            "    server {\n"
            f"        listen {dep.lb_port};\n"
            "        location / {\n"
            "            proxy_pass http://serveplan_replicas;\n"
            "            proxy_http_version 1.1;\n"
            "            proxy_set_header Connection \"\";\n"
            "            proxy_set_header Host $host;\n"
            "            proxy_buffering off;\n"
            "            proxy_read_timeout 3600s;\n"
            "            client_max_body_size 64m;\n"
            "        }\n"
            "    }\n"
            "}\n")
