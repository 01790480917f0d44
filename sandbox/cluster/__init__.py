"""Scale-out: a control plane (`bashfleet serve --broker URL`) and worker nodes
(`bashfleet worker --broker URL --name NAME`) that share one Redis.

    control plane                     Redis                        worker node NAME
    scheduler -> RemoteExecutor --- Celery queue bashfleet.node.NAME ---> NodeWorker
                 (signed job)                                             local pool / Docker
    on_output/on_done <- ResultReader <-- stream bashfleet:results <----- output, outcome
    placement, lost nodes <- NodeMonitor <-- key bashfleet:node:NAME <--- heartbeat

The plan, locks and priorities stay in the control plane: a node runs only what it is
sent, and only when the message carries a valid HMAC of the control plane's key
(signing.py). Modules: signing.py (keys, HMAC), wire.py (message shapes, key names,
the Celery app), control.py (the control plane's side), worker.py (a node);
transfer.py and node_files.py (workspace files through Redis), files.py (the files API
on the nodes), move.py (moving a workspace between nodes).
"""
