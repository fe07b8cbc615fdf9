"""The Gradio app: per-session state (:mod:`session`), handlers over it (:mod:`handlers`), the layout (:mod:`ui`).

``app.py`` at the repository root builds and launches it: ``build_demo(SessionStore(), ModelHub.default().start())``.
"""
