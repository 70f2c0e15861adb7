"""SFTP access to a user's drive (``mydrive serve sftp PEER_DIR``): a face beside the UI.

Every SSH client that speaks SFTP (OpenSSH ``sftp`` and ``scp``, rclone, sshfs, WinSCP) sees
the logged-in user's decrypted tree; the keys stay in the server process, like the UI's.
What is stored, how logins work and what a crash leaves: docs/sftp.md.
"""
