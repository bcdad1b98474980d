"""
The admin socket: each process serves a small HTTP/JSON API on C{[mdsvc] admin_dir}/ROLE.sock
(mode 0600), for the operator's commands C{mdsvc-manage doctor} and C{mdsvc-manage trace}, never
on a guest-facing listener (L{mdsvc.admin.server}, L{mdsvc.admin.client}).
"""
