"""The ``gr.Blocks`` layout: four steps (clip, reconstruct, masks, camera path), each unlocked by the previous.

Event functions here only resolve the caller's session, call a handler from :mod:`pgdvs.app.handlers` and map
its result onto components; all logic lives in the handlers.
"""
from __future__ import annotations

import os

import gradio as gr

from . import handlers, visuals
from .path_controls import slider_pool
from .session import SessionStore

VIDEO_TYPES = [".mp4", ".mov", ".webm", ".mkv", ".gif", ".avi", ".m4v", ".zip"]
HEAVY_JOBS = int(os.environ.get("PGDVS_HEAVY_JOBS", "2"))  # reconstructions/renders running at once
LABELS = ["include", "exclude"]
DEFAULT_PRESET = "spatio-temporal"

INTRO = """# PGDVS: new camera paths for a casual video
1. **Clip**: upload a short video (or a zip of frames, or a scene archive from step 4), or pick an example.
2. **Reconstruct**: cameras, depth and dynamic masks are estimated from the clip.
3. **Masks**: click the frame to fix the dynamic mask (include / exclude points), then apply to all frames.
4. **Camera path**: choose a preset, tune it, and render a video."""


def build_demo(store: SessionStore, hub=None) -> gr.Blocks:
    """The app. ``store`` holds the sessions; ``hub`` (a started ``pgdvs.hub.ModelHub`` or None) picks backends."""
    pool = slider_pool()
    preset_names = list(handlers.presets())

    def session_of(request: gr.Request):
        return store.get(request.session_hash if request is not None else "")

    def warn(notices):
        for note in notices:
            gr.Warning(note)

    with gr.Blocks(title="PGDVS") as demo:
        gr.Markdown(INTRO)
        backend_md = gr.Markdown(_backend_text(hub), elem_id="backends")

        gr.Markdown("## 1 · Clip")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Video, zip of frames, or scene archive", file_types=VIDEO_TYPES,
                                 elem_id="upload")
                with gr.Row():
                    example = gr.Dropdown(handlers.list_examples(), label="Example clip", scale=3,
                                          value=(handlers.list_examples() or [None])[0])
                    use_example = gr.Button("Use example", scale=1, elem_id="use_example")
                with gr.Accordion("Advanced", open=False):
                    max_frames = gr.Slider(2, 120, value=48, step=1, label="Max frames kept", elem_id="max_frames")
                    max_side = gr.Slider(64, 960, value=480, step=16, label="Max image side (px)", elem_id="max_side")
            with gr.Column(scale=1):
                clip_video = gr.Video(label="Clip after ingest", interactive=False, elem_id="clip_video")
                clip_info = gr.Markdown(elem_id="clip_info")

        gr.Markdown("## 2 · Reconstruct")
        with gr.Row():
            with gr.Column(scale=1):
                reconstruct_btn = gr.Button("Reconstruct", variant="primary", interactive=False,
                                            elem_id="reconstruct")
                stage_log = gr.Markdown(elem_id="stage_log")
            with gr.Column(scale=2):
                with gr.Tabs():
                    with gr.Tab("Dynamic masks"):
                        overlays = gr.Gallery(label="Frames with dynamic-mask overlay", columns=4, height=300,
                                              elem_id="overlays")
                    with gr.Tab("Depth"):
                        depth_img = gr.Image(label="Middle frame and its depth", interactive=False, height=300)
                    with gr.Tab("Cameras"):
                        traj_img = gr.Image(label="Camera trajectory", interactive=False, height=300)
            with gr.Column(scale=2):
                # not in a tab: the 3D viewer does not start while its tab is hidden
                points = gr.Model3D(label="Static point cloud (drag to orbit)", display_mode="point_cloud",
                                    height=360, elem_id="points")

        gr.Markdown("## 3 · Masks")
        with gr.Row():
            with gr.Column(scale=2):
                mask_image = gr.Image(label="Click to add a point", interactive=False, elem_id="mask_image")
                frame = gr.Slider(0, 1, value=0, step=1, label="Frame", interactive=False, elem_id="frame")
                mask_info = gr.Markdown(elem_id="mask_info")
            with gr.Column(scale=1):
                label = gr.Radio(LABELS, value="include", label="Click adds", interactive=False)
                with gr.Row():
                    undo_btn = gr.Button("Undo", interactive=False)
                    clear_btn = gr.Button("Clear frame", interactive=False)
                    reset_btn = gr.Button("Reset to automatic", interactive=False)
                apply_btn = gr.Button("Apply to all frames", interactive=False, elem_id="apply_all")
                strip = gr.Gallery(label="Check the propagated masks", columns=4, height=200, visible=False)
                with gr.Row(visible=False) as accept_row:
                    accept_btn = gr.Button("Accept", variant="primary")
                    discard_btn = gr.Button("Discard")
        with gr.Row(visible=False):  # API-only: .select cannot be driven by gradio_client
            seg_frame, seg_x, seg_y = gr.Number(precision=0), gr.Number(), gr.Number()
            seg_label = gr.Textbox(value="include")
            seg_btn = gr.Button()

        gr.Markdown("## 4 · Camera path")
        with gr.Row():
            with gr.Column(scale=1):
                preset = gr.Dropdown(preset_names, label="Preset", interactive=False, elem_id="preset",
                                     value=DEFAULT_PRESET if DEFAULT_PRESET in preset_names else None)
                preset_md = gr.Markdown(elem_id="preset_md")
                sliders = [gr.Slider(s.lo, s.hi, step=s.step, label=s.label, visible=False,
                                     elem_id="path-" + s.label.replace(".", "-")) for s in pool]
                render_btn = gr.Button("Render", variant="primary", interactive=False, elem_id="render")
            with gr.Column(scale=1):
                with gr.Row():
                    path_plot = gr.Image(label="Path (coloured by time) over the input cameras (grey)",
                                         interactive=False, height=240)
                    first_view = gr.Image(label="First frame (low resolution)", interactive=False, height=240)
                video = gr.Video(label="Rendered video", interactive=False, elem_id="result_video")
                render_info = gr.Markdown(elem_id="render_info")
                downloads = gr.File(label="Downloads: video, scene archive, depth video, mask video",
                                    file_count="multiple", interactive=False)

        mask_controls = [frame, label, undo_btn, clear_btn, reset_btn, apply_btn]
        path_controls = [preset, render_btn]
        render_outputs = [video, render_info, downloads]
        scene_outputs = [stage_log, overlays, depth_img, traj_img, points, mask_image, mask_info, frame,
                         strip, accept_row, *mask_controls, *path_controls, *render_outputs]

        def scene_updates(view, session):
            mask = handlers.show_frame(session, 0)
            out = {stage_log: view.log, overlays: view.overlays, depth_img: view.depth,
                   traj_img: view.trajectory, points: str(view.points) if view.points else None,
                   mask_image: mask.image, mask_info: mask.info,
                   frame: gr.update(value=0, maximum=view.n_frames - 1, interactive=True),
                   strip: gr.update(visible=False, value=None), accept_row: gr.update(visible=False)}
            out.update({c: gr.update(interactive=True) for c in mask_controls[1:] + path_controls})
            out.update({video: None, render_info: "", downloads: None})  # renders of an earlier scene
            return out

        def cleared_scene():
            out = {c: None for c in (overlays, depth_img, traj_img, points, mask_image, video, downloads)}
            out.update({stage_log: "", mask_info: "", render_info: "", strip: gr.update(visible=False, value=None),
                        accept_row: gr.update(visible=False)})
            out.update({c: gr.update(interactive=False) for c in mask_controls + path_controls})
            return out

        def clip_updates(view, session):
            warn(view.notices)
            out = {clip_video: str(view.video), clip_info: view.summary}
            if view.scene_view is not None:
                out.update(scene_updates(view.scene_view, session))
                out[reconstruct_btn] = gr.update(interactive=False)
            else:
                out.update(cleared_scene())
                out[reconstruct_btn] = gr.update(interactive=True)
            return out

        def on_upload(path, frames_, side, request: gr.Request):
            session = session_of(request)
            return clip_updates(handlers.ingest(session, path, frames_, side), session)

        def on_example(name, frames_, side, request: gr.Request):
            session = session_of(request)
            return clip_updates(handlers.load_example(session, name, frames_, side), session)

        def on_reconstruct(request: gr.Request, progress=gr.Progress()):
            session = session_of(request)
            view = handlers.reconstruct(session, lambda f, m: progress(f, desc=m), hub=hub)
            warn(view.notices)
            return scene_updates(view, session)

        clip_outputs = [clip_video, clip_info, reconstruct_btn, *scene_outputs]
        heavy = dict(concurrency_id="heavy", concurrency_limit=HEAVY_JOBS)
        upload_event = upload.upload(on_upload, [upload, max_frames, max_side], clip_outputs, api_name="ingest",
                                     **heavy)
        example_event = use_example.click(on_example, [example, max_frames, max_side], clip_outputs,
                                          api_name="load_example", **heavy)
        recon_event = reconstruct_btn.click(on_reconstruct, None, scene_outputs, api_name="reconstruct",
                                            trigger_mode="once", **heavy)

        # --- step 3: masks
        def mask_out(view):
            return view.image, view.info

        def on_frame(k, request: gr.Request):
            return mask_out(handlers.show_frame(session_of(request), k))

        def on_click(k, which, evt: gr.SelectData, request: gr.Request):
            session = session_of(request)
            if session.scene is None:
                raise gr.Error("Step 2 first: reconstruct the clip before clicking on it.")
            scale = visuals.display_scale(session.scene.hw)  # the displayed frame is enlarged this much
            x, y = evt.index
            return mask_out(handlers.segment(session, k, x / scale, y / scale, which, hub=hub))

        def on_segment(k, x, y, which, request: gr.Request):
            return mask_out(handlers.segment(session_of(request), k, x, y, which, hub=hub))

        def on_edit(action):
            def run(k, request: gr.Request):
                return mask_out(handlers.edit(session_of(request), k, action))
            return run

        def on_apply(request: gr.Request, progress=gr.Progress()):
            items = handlers.propagate(session_of(request), lambda f, m: progress(f, desc=m))
            return gr.update(value=items, visible=True), gr.update(visible=True)

        def on_accept(request: gr.Request):
            session = session_of(request)
            view = handlers.accept(session)
            gr.Info("Masks accepted: renders use them from now on.")
            return scene_updates(view, session)

        def on_discard(k, request: gr.Request):
            session = session_of(request)
            gr.Info(handlers.discard(session))
            return (gr.update(visible=False, value=None), gr.update(visible=False),
                    *mask_out(handlers.show_frame(session, k)))

        mask_io = dict(outputs=[mask_image, mask_info], concurrency_id="light", concurrency_limit=4)
        frame.release(on_frame, [frame], api_name="show_frame", **mask_io)
        mask_image.select(on_click, [frame, label], api_visibility="private", **mask_io)
        seg_btn.click(on_segment, [seg_frame, seg_x, seg_y, seg_label], api_name="segment", **mask_io)
        for button, action in ((undo_btn, "undo"), (clear_btn, "clear"), (reset_btn, "reset")):
            button.click(on_edit(action), [frame], api_name=action, **mask_io)
        apply_btn.click(on_apply, None, [strip, accept_row], api_name="propagate", trigger_mode="once", **heavy)
        accept_btn.click(on_accept, None, scene_outputs, api_name="accept")
        discard_btn.click(on_discard, [frame], [strip, accept_row, mask_image, mask_info], api_name="discard")

        # --- step 4: camera path
        def on_preset(name, request: gr.Request):
            description, values = handlers.preset_settings(session_of(request), name)
            updates = [gr.update(visible=s.label in values, value=values[s.label][0], minimum=values[s.label][1],
                                 maximum=values[s.label][2]) if s.label in values else gr.update(visible=False)
                       for s in pool]
            return [description, *updates]

        def slider_values(values):
            return {s.label: v for s, v in zip(pool, values)}

        # request/progress come first: Gradio fills only positional parameters, and the sliders are *args
        def on_preview(request: gr.Request, name, *values):
            session = session_of(request)
            if session.scene is None or not name:
                return None, None
            return handlers.preview_path(session, name, slider_values(values))

        def on_render(request: gr.Request, progress=gr.Progress(), *args):
            name, values = args[0], args[1:]
            result = handlers.render(session_of(request), name, slider_values(values),
                                     lambda f, m: progress(f, desc=m))
            warn(result.notices)
            return str(result.video), result.info, [str(p) for p in result.downloads]

        preview_io = dict(inputs=[preset, *sliders], outputs=[path_plot, first_view], concurrency_id="light",
                          concurrency_limit=4)
        preset_event = preset.input(on_preset, [preset], [preset_md, *sliders], api_name="select_preset")
        preset_event.then(on_preview, api_name="preview", **preview_io)
        for event in (recon_event, upload_event, example_event):  # a new scene: path settings fit it
            event.success(on_preset, [preset], [preset_md, *sliders], api_visibility="private").then(
                on_preview, api_visibility="private", **preview_io)
        for slider in sliders:
            slider.release(on_preview, api_visibility="private", **preview_io)
        render_btn.click(on_render, [preset, *sliders], [video, render_info, downloads], api_name="render",
                         trigger_mode="once", **heavy)

        if hub is not None:  # refresh until every model is ready or given up on
            timer = gr.Timer(5.0)
            timer.tick(lambda: (_backend_text(hub), gr.Timer(active=not hub.wait(0))), None, [backend_md, timer],
                       api_visibility="private", show_progress="hidden")

        def end_session(request: gr.Request):
            store.close(request.session_hash)

        demo.unload(end_session)
    return demo


def _backend_text(hub) -> str:
    if hub is None:
        return "**Backends:** classical for every stage (no model hub)."
    status = hub.status()
    rows = [f"| {stage} | {label} |" for stage, label in hub.backends().items()]
    models = "; ".join(f"{s.backend_label}: {s.line()}" for s in status.values())
    return "**Backends** (learned models switch in once downloaded)\n\n| stage | backend |\n|---|---|\n" + \
        "\n".join(rows) + f"\n\n<small>{models}</small>"
