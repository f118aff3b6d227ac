"""The ``audio`` capability: output devices and per-application sessions of the sound server.

Each change answers what the sound server shows right after it (the device or session read
back), so a caller sees the volume the server really applied (it rounds to its own steps) rather
than the one it asked for.
"""

from __future__ import annotations

from remotehands.agent.capabilities.registry import handles
from remotehands.agent.context import ActionContext
from remotehands.protocol import params as P
from remotehands.protocol import results as R
from remotehands.protocol.models import AudioState

__all__ = ["audio_default", "audio_move", "audio_mute", "audio_status", "audio_volume"]


def _read_back(
    state: AudioState, device_id: str | None = None, session_id: str | None = None
) -> R.AudioChanged:
    """The changed session, or device (the default one when neither is named), as ``state``
    shows it; left out when it is gone by now (a session that ended meanwhile)."""
    if session_id is not None:
        session = next((s for s in state.sessions if s.id == session_id), None)
        return R.AudioChanged(session=session)
    device = next(
        (d for d in state.devices if (d.id == device_id if device_id is not None else d.default)),
        None,
    )
    return R.AudioChanged(device=device)


@handles("audio.status")
async def audio_status(ctx: ActionContext, _: P.NoParams) -> R.AudioStatus:
    """Every output device and every playing session, read fresh."""
    state = await ctx.audio.audio_status()
    return R.AudioStatus(devices=state.devices, sessions=state.sessions)


@handles("audio.volume")
async def audio_volume(ctx: ActionContext, p: P.AudioVolumeParams) -> R.AudioChanged:
    """Set the volume of a session, a device or the default device."""
    await ctx.audio.audio_volume(p.volume, device_id=p.device_id, session_id=p.session_id)
    return _read_back(await ctx.audio.audio_status(), p.device_id, p.session_id)


@handles("audio.mute")
async def audio_mute(ctx: ActionContext, p: P.AudioMuteParams) -> R.AudioChanged:
    """Mute or unmute a session, a device or the default device."""
    await ctx.audio.audio_mute(p.muted, device_id=p.device_id, session_id=p.session_id)
    return _read_back(await ctx.audio.audio_status(), p.device_id, p.session_id)


@handles("audio.default")
async def audio_default(ctx: ActionContext, p: P.AudioDefaultParams) -> R.AudioChanged:
    """Make an output device the default one."""
    await ctx.audio.audio_default(p.device_id)
    return _read_back(await ctx.audio.audio_status(), device_id=p.device_id)


@handles("audio.move")
async def audio_move(ctx: ActionContext, p: P.AudioMoveParams) -> R.AudioChanged:
    """Route a session to another output device."""
    await ctx.audio.audio_move(p.session_id, p.device_id)
    state = await ctx.audio.audio_status()
    session = _read_back(state, session_id=p.session_id).session
    return R.AudioChanged(session=session, device=_read_back(state, device_id=p.device_id).device)
