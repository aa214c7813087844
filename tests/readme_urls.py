"""A URLconf for the README tests' servers: a stream big enough to outrun a slow client."""

import time

from django.urls import path

from django_sse.views import BaseSseView


class BigView(BaseSseView):
    """Send ``n`` events (query ``n``, default 16) of 1 MB each at once, then block for an hour."""

    def iterator(self):
        for _ in range(int(self.request.GET.get("n", "16"))):
            self.sse.add_message("big", "x" * 1_000_000)
            yield
        time.sleep(3600)
        yield


urlpatterns = [path("big/", BigView.as_view())]
