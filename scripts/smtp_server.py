#!/usr/bin/env python3
"""A real SMTP server on loopback for clearflow's tests, built on aiosmtpd.

Every accepted message is stored in a fresh Maildir (Python's ``mailbox.Maildir``)
with two headers prepended: ``X-Envelope-From`` and ``X-Envelope-To`` (the envelope
recipients, comma-separated), so tests can check Bcc delivery without a Bcc header.

Usage:
  smtp_server.py --maildir DIR [--host 127.0.0.1] [--port 0]
                 [--starttls --cert F --key F | --tls --cert F --key F]
                 [--auth USER:PASS] [--reject REGEX] [--tempfail REGEX]
                 [--processes N]

Prints ``READY <port>`` on stdout once listening; exits cleanly on SIGTERM or SIGINT.

One aiosmtpd process handles about 150-170 messages a second on one core. With
``--processes N`` that many processes listen on the same port (SO_REUSEPORT; the kernel
spreads connections over them), so a benchmark measures the client, not this server.
"""

import argparse
import asyncio
import logging
import mailbox
import os
import re
import signal
import socket
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class MaildirHandler:
    """Stores each message in a Maildir; rejects or defers recipients by pattern."""

    def __init__(self, maildir, reject, tempfail):
        self.maildir = maildir
        self.reject = reject
        self.tempfail = tempfail

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject is not None and self.reject.search(address):
            return "550 5.1.1 mailbox unavailable"
        if self.tempfail is not None and self.tempfail.search(address):
            return "451 4.3.0 temporary failure, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or b""
        # Maildir files conventionally use bare LF line endings.
        content = content.replace(b"\r\n", b"\n")
        prefix = (
            f"X-Envelope-From: {envelope.mail_from}\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\n"
        ).encode("utf-8")
        key = self.maildir.add(prefix + content)
        return f"250 2.0.0 OK queued as {key}"


def parse_args(argv):
    p = argparse.ArgumentParser(description="loopback SMTP server storing mail in a Maildir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--maildir", required=True, help="created by the server; must not exist")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--starttls", action="store_true", help="offer STARTTLS, require it before AUTH and MAIL")
    tls.add_argument("--tls", action="store_true", help="implicit TLS on connect")
    p.add_argument("--cert", help="server certificate chain (PEM)")
    p.add_argument("--key", help="server private key (PEM)")
    p.add_argument("--auth", metavar="USER:PASS", help="require AUTH PLAIN/LOGIN with these credentials")
    p.add_argument("--reject", metavar="REGEX", help="recipients matching get 550 5.1.1")
    p.add_argument("--tempfail", metavar="REGEX", help="recipients matching get 451")
    p.add_argument("--processes", type=int, default=1, help="server processes sharing the port (SO_REUSEPORT)")
    args = p.parse_args(argv)
    if args.processes < 1:
        p.error("--processes must be at least 1")
    if (args.starttls or args.tls) and not (args.cert and args.key):
        p.error("--starttls and --tls need --cert and --key")
    if args.auth is not None and ":" not in args.auth:
        p.error("--auth takes USER:PASS")
    if os.path.exists(args.maildir):
        p.error(f"maildir {args.maildir} already exists; give a path that does not")
    return args


def make_authenticator(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False makes aiosmtpd answer "535 5.7.8"; its default leaves the client hanging.
        return AuthResult(success=ok, handled=False)

    return authenticate


def listening_socket(host, port, reuse_port):
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


async def serve(args, sock, announce):
    # aiosmtpd logs deprecation notices of its own on every AUTH; keep stderr for real errors.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    loop = asyncio.get_running_loop()
    maildir = mailbox.Maildir(args.maildir, create=True)
    handler = MaildirHandler(
        maildir,
        re.compile(args.reject) if args.reject else None,
        re.compile(args.tempfail) if args.tempfail else None,
    )

    ctx = None
    if args.starttls or args.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)

    smtp_kwargs = dict(
        hostname="clearflow-test-smtp",
        enable_SMTPUTF8=True,
        loop=loop,
    )
    if args.starttls:
        smtp_kwargs.update(tls_context=ctx, require_starttls=True, auth_require_tls=True)
    else:
        # Implicit TLS is already encrypted; plain mode is loopback-only test traffic,
        # so aiosmtpd's warning about AUTH without STARTTLS does not apply.
        smtp_kwargs.update(auth_require_tls=False)
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    if args.auth is not None:
        user, password = args.auth.split(":", 1)
        smtp_kwargs.update(
            auth_required=True,
            authenticator=make_authenticator(user, password),
            auth_exclude_mechanism=["CRAM-MD5"],
        )

    def factory():
        return SMTP(handler, **smtp_kwargs)

    server = await loop.create_server(factory, sock=sock, ssl=ctx if args.tls else None)
    port = sock.getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    if announce:
        print(f"READY {port}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    reuse = args.processes > 1
    try:
        sock = listening_socket(args.host, args.port, reuse)
    except OSError as e:
        print(f"smtp_server: {e}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    # Created once here, so the processes below do not race to create it.
    mailbox.Maildir(args.maildir, create=True)
    children = []
    if reuse:
        # Each child binds its own socket to the same port before the parent says READY.
        for _ in range(args.processes - 1):
            child_sock = listening_socket(args.host, port, True)
            pid = os.fork()
            if pid == 0:
                sock.close()
                try:
                    asyncio.run(serve(args, child_sock, announce=False))
                finally:
                    os._exit(0)
            child_sock.close()
            children.append(pid)
    try:
        asyncio.run(serve(args, sock, announce=True))
    except OSError as e:
        print(f"smtp_server: {e}", file=sys.stderr)
        return 1
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
