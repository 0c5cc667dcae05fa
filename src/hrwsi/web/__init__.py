"""The live web dashboard (`hrwsi web`): server-rendered pages kept current by server-sent events
fed from the database's notifications. See docs/adr/0007-web-dashboard.md.

- `app`: the aiohttp application (pages, live fragments, JSON API, operator actions)
- `data`: what each page reads (sql/queries/web.sql)
- `live`: notifications -> server-sent events
- `gantt`: the current schedule's chart layout
- `auth`: tokens, sessions, CSRF
- `config`: HRWSI_WEB_* settings
- `service`: the dashboard as a service (`hrwsi web`, and a step of `hrwsi up`)
"""
