"""`relais demo`: a Vosges territory seeded and played over HTTP, then what each organisation received.

The territory (relais/demo_data/territory.json) is the Ouest vosgien: the Centre hospitalier de l'Ouest
vosgien, two MSP, a médecin's practice taking SNP slots, the CPTS de la Plaine, a DAC and a SAS. People are
fictitious, with test INS-NIR identifiers. Journeys, all over HTTP:

1. Jeanne (MSP de Monthureux-sur-Saône): admission, discharge, handoff proposed and accepted by her MSP.
2. Paul (no treating team): admission and discharge reach the CPTS, minimised.
3. Marcel (MSP de Lamarche, cancer and living alone): admission, then a complex discharge that reaches the DAC.
4. The SAS asks for two SNP appointments: Jeanne's goes to her own MSP, Paul's to the territory pool.

Organisations are registered directly in the auth database (as `relais org add` does): an existing one
gets a fresh token. Feeds are read from where they stood before the run, so a run counts only itself.

The package, by concern: `territory` (the territory and its registration), `resources` (the FHIR the actors send),
`client` (the services over HTTP, feeds), `journeys` (the steps and what each organisation must receive),
`embedded` (Relais in this process), `printing` (progress and the table), `keep_running`, `command` (`run_demo`).
"""

from relais.demo.client import SERVICES, FeedItem, RelaisHttp, parse_urls, wait_until
from relais.demo.command import run_demo
from relais.demo.embedded import embedded_relais
from relais.demo.errors import DemoError
from relais.demo.journeys import EXPECTED, Received, Scenario
from relais.demo.keep_running import _serve_until_stopped
from relais.demo.printing import received_table
from relais.demo.resources import availability, careteam, hospital_message, service_request
from relais.demo.territory import Commune, Organisation, Person, Referent, Territory, load_territory, register

__all__ = [
    "EXPECTED",
    "SERVICES",
    "Commune",
    "DemoError",
    "FeedItem",
    "Organisation",
    "Person",
    "Received",
    "Referent",
    "RelaisHttp",
    "Scenario",
    "Territory",
    "_serve_until_stopped",
    "availability",
    "careteam",
    "embedded_relais",
    "hospital_message",
    "load_territory",
    "parse_urls",
    "received_table",
    "register",
    "run_demo",
    "service_request",
    "wait_until",
]
