"""``scenic kiosk``: the self-service ticket kiosk (docs/kiosk.md).

:mod:`clients.kiosk.flow` is the visitor's flow as a pure state machine,
:mod:`clients.kiosk.texts` its words in Chinese and English,
:mod:`clients.kiosk.view` what each screen shows, :mod:`clients.kiosk.qr`
QR codes as terminal text, :mod:`clients.kiosk.app` the textual App that
drives the flow over a :class:`clients.tui.link.Link`, and
:mod:`clients.kiosk.cli` the ``scenic kiosk`` command.
"""
