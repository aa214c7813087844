import time

from django.shortcuts import render
from django.utils import timezone

from django_sse.views import BaseSseView


class ClockView(BaseSseView):
    """A clock: one event a second, from a plain BaseSseView."""

    def iterator(self):
        while True:
            self.sse.add_message("tick", {"now": timezone.now()})
            yield
            time.sleep(1)


def index(request):
    return render(request, "index.html")
