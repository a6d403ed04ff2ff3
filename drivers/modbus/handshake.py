"""The command handshake with a tool over Modbus TCP (docs/equipment.md, "Command
handshake"), a PLC can implement it::

    controller                                         tool
        |-- read answer block (last sequence S) ------->|
        |-- write arguments (holding registers) ------->|
        |-- write [command code, S+1] in one request -->|  runs the command once
        |-- read answer block ------------------------->|  code, reason, then sequence
        |<-------------- sequence == S+1 ? -------------|  (re-read until the timeout)

A refusal is :class:`~drivers.errors.CommandRefused` with the tool's code and reason, or
:class:`~drivers.errors.ToolAlarmed` when the tool refused because it is in ALARM (except
a refused reset: that is about the alarm, and the tool's reason is what counts). Arguments
the map cannot carry are refused the same way, with INVALID_ARGUMENT, before anything is
written (:meth:`CommandChannel.invalid`, :meth:`CommandChannel.encode`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from drivers.errors import CommandRefused, DriverError, ToolAlarmed, ToolTimeout
from drivers.modbus.codec import BlockCodec, CodecError, Value, int_enum
from drivers.modbus.reads import ToolReader, field_int, field_str
from drivers.modbus.regmap import MAX_WRITE, Command, RegisterMap
from drivers.modbus.session import ModbusSession
from drivers.model import ProcessState, RefusalCode

_ANSWER_FIRST_PAUSE_S = 0.002
_ANSWER_MAX_PAUSE_S = 0.05


@dataclass(frozen=True, slots=True)
class _Answer:
    sequence: int
    code: int
    reason: str


def _chunks(writes: Sequence[tuple[int, list[int]]], size: int) -> list[tuple[int, list[int]]]:
    """Runs of registers split into requests of at most ``size`` registers."""
    return [
        (address + offset, registers[offset : offset + size])
        for address, registers in writes
        for offset in range(0, len(registers), size)
    ]


class CommandChannel:
    """One tool's commands, one at a time: each waits up to ``timeout_s`` for its answer."""

    def __init__(
        self,
        tool_id: str,
        session: ModbusSession,
        register_map: RegisterMap,
        reader: ToolReader,
        timeout_s: float,
    ) -> None:
        self.tool_id = tool_id
        self._session = session
        self._map = register_map
        self._reader = reader
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()

    def invalid(self, command: Command, message: str) -> CommandRefused:
        return CommandRefused(
            f"refused before sending (INVALID_ARGUMENT): {message}",
            tool_id=self.tool_id,
            request=command.value,
            code=RefusalCode.INVALID_ARGUMENT,
        )

    def encode(
        self, command: Command, block: BlockCodec, values: Mapping[str, Value]
    ) -> list[tuple[int, list[int]]]:
        try:
            return block.encode_runs(values)
        except CodecError as exc:
            raise self.invalid(command, str(exc)) from exc

    async def _read_answer(self, request: str) -> _Answer:
        values = await self._reader.read_block(self._map.answer, request)
        return _Answer(
            field_int(values, "sequence"), field_int(values, "code"), field_str(values, "reason")
        )

    async def send(
        self,
        command: Command,
        writes: Sequence[tuple[int, list[int]]],
        *,
        alarm_explains: bool = True,
    ) -> None:
        """Send ``command`` and wait for its answer. A WRONG_STATE refusal from a tool in
        ALARM is :class:`ToolAlarmed` unless not ``alarm_explains`` (a reset: the alarm is
        what it is about, the tool's reason says why it stays)."""
        request = command.value
        async with self._lock:
            last = await self._read_answer(request)
            sequence = last.sequence % 0xFFFF + 1
            for address, registers in _chunks(writes, MAX_WRITE):
                await self._session.write_registers(address, registers, request=request)
            trigger = self.encode(
                command,
                self._map.command,
                {"code": self._map.command_codes[command], "sequence": sequence},
            )
            for address, registers in trigger:  # one run: the map keeps them adjacent
                await self._session.write_registers(address, registers, request=request)
            answer = await self._await_answer(sequence, request)
        if answer.code == RefusalCode.OK:
            return
        try:
            code = int_enum(RefusalCode, answer.code, self._map.answer.field("code").label)
        except CodecError as exc:
            raise self._reader.garbage(exc, request) from exc
        if code is RefusalCode.WRONG_STATE and alarm_explains:
            await self._raise_if_alarmed(request)
        detail = f": {answer.reason}" if answer.reason else ""
        raise CommandRefused(
            f"refused ({code.name}){detail}", tool_id=self.tool_id, request=request, code=code
        )

    async def _await_answer(self, sequence: int, request: str) -> _Answer:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        pause = _ANSWER_FIRST_PAUSE_S
        while True:
            answer = await self._read_answer(request)
            if answer.sequence == sequence:
                return answer
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ToolTimeout(
                    f"the tool did not answer command {request} (sequence {sequence}) within "
                    f"{self._timeout_s:g} s",
                    tool_id=self.tool_id,
                    request=request,
                )
            await asyncio.sleep(min(pause, remaining))
            pause = min(2 * pause, _ANSWER_MAX_PAUSE_S)

    async def _raise_if_alarmed(self, request: str) -> None:
        try:
            status = await self._reader.status()
        except DriverError:
            return  # the refusal itself is what the caller gets
        if status.state is ProcessState.ALARM and status.alarm is not None:
            raise ToolAlarmed(status.alarm, tool_id=self.tool_id, request=request)
