"""Serve the test project on gevent's pywsgi: ``python -m tests.pywsgi_main PORT``."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402


def main(argv: list[str]) -> None:
    from tests.wsgi import application

    port = int(argv[1])
    WSGIServer(("127.0.0.1", port), application, log=None).serve_forever()


if __name__ == "__main__":
    main(sys.argv)
