"""The V2 REST front door (Sanic): `app` (routes, errors), `body` (inference bodies in and out),
`largejson` (JSON bodies of 1 MiB or more, read in steps), `connection` (read deadlines), `apidoc/`
(/openapi.json and /docs)."""
