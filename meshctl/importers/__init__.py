"""`meshctl import`: Istio and Gateway API objects -> a mesh.d policy directory, with a report.

`read.py` loads the input files (positions kept, malformed input as diagnostics), `kube.py`
indexes the Kubernetes Services and Deployments (versions, labels, ports, service accounts),
`istio.py` and `gateway_api.py` convert, `emit.py` writes one YAML file per service with a
comment naming each source object, and `report.py` lists every field not carried over.
"""
