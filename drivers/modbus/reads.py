"""Reading a tool over Modbus TCP, in equipment words: its status, identity, active recipe
and a finished job's results, decoded from the blocks its register map names
(:mod:`drivers.modbus.regmap`). Registers that hold what no field may hold are a
:class:`~drivers.errors.ProtocolError` naming the request: the tool answered garbage.

:class:`ToolReader` is one tool's; :class:`~drivers.modbus.driver.ModbusDriver` reads through
it, and its command handshake (:mod:`drivers.modbus.handshake`) reads the status with it when
a tool refuses a command.
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.catalogue import ClassSpec
from drivers.errors import ConfigurationError, ProtocolError, RecipeMismatch
from drivers.modbus.codec import (
    BlockCodec,
    CodecError,
    FieldCodec,
    Value,
    int_enum,
    site_registers,
    unpack_site_codes,
)
from drivers.modbus.regmap import MAX_READ, RegisterMap
from drivers.modbus.session import ModbusSession
from drivers.model import (
    Alarm,
    AlarmSeverity,
    EquipmentClass,
    JobResults,
    MeasuredValue,
    Mode,
    ProcessState,
    Recipe,
    RecipeInfo,
    SiteMap,
    ToolIdentity,
    ToolStatus,
)

_RESULTS_ATTEMPTS = 3


def field_int(values: Mapping[str, Value], name: str) -> int:
    value = values[name]
    if not isinstance(value, int):  # pragma: no cover - the map checks field types
        raise CodecError(f"{name}: expected an integer field, got {value!r}")
    return value


def field_str(values: Mapping[str, Value], name: str) -> str:
    value = values[name]
    if not isinstance(value, str):  # pragma: no cover - the map checks field types
        raise CodecError(f"{name}: expected a string field, got {value!r}")
    return value


def _runs(block: BlockCodec) -> tuple[tuple[int, int, tuple[FieldCodec, ...]], ...]:
    """The block's runs of adjacent registers, each with the fields inside it."""
    runs = []
    for start, count in block.runs():
        inside = tuple(f for f in block.fields if start <= f.address < start + count)
        runs.append((start, count, inside))
    return tuple(runs)


class ToolReader:
    """Reads one tool's blocks through its session, by its map and its class's value specs."""

    def __init__(
        self,
        tool_id: str,
        equipment_class: EquipmentClass,
        session: ModbusSession,
        register_map: RegisterMap,
        spec: ClassSpec,
    ) -> None:
        self.tool_id = tool_id
        self.equipment_class = equipment_class
        self._session = session
        self._map = register_map
        self._spec = spec
        self._last_status: tuple[list[int], ToolStatus] | None = None
        self._measured_runs = _runs(register_map.measured)
        self._status_labels = {f.name: f.label for f in register_map.status.fields}

    async def read_block(self, block: BlockCodec, request: str) -> dict[str, Value]:
        registers = await self._session.read_input_registers(
            block.start, block.count, request=request
        )
        return self.decoded(block, registers, request)

    def decoded(self, block: BlockCodec, registers: list[int], request: str) -> dict[str, Value]:
        try:
            return block.decode(registers)
        except CodecError as exc:
            raise self.garbage(exc, request) from exc

    def garbage(self, exc: Exception, request: str) -> ProtocolError:
        return ProtocolError(
            f"the tool's registers hold an invalid value: {exc}",
            tool_id=self.tool_id,
            request=request,
        )

    async def status(self) -> ToolStatus:
        """State, mode, progress, job, alarm and results flag: one read of the status block."""
        block = self._map.status
        registers = await self._session.read_input_registers(
            block.start, block.count, request="status"
        )
        last = self._last_status
        if last is not None and last[0] == registers:
            return last[1]  # nothing changed: no decoding
        try:
            status = self._status_from(block.decode(registers))
        except CodecError as exc:
            raise self.garbage(exc, "status") from exc
        self._last_status = (registers, status)
        return status

    def _status_from(self, values: Mapping[str, Value]) -> ToolStatus:
        labels = self._status_labels
        severity = field_int(values, "alarm_severity")
        alarm = None
        if severity:
            alarm = Alarm(
                code=field_int(values, "alarm_code"),
                text=field_str(values, "alarm_text"),
                severity=int_enum(AlarmSeverity, severity, labels["alarm_severity"]),
            )
        sites_done, sites_total = field_int(values, "sites_done"), field_int(values, "sites_total")
        if not 0 <= sites_done <= max(sites_total, 0) or sites_total < 0:
            # as the OPC UA codec says it (drivers/opcua/codec.py)
            raise CodecError(
                f"{labels['sites_done']}, {labels['sites_total']}: progress: {sites_done} of "
                f"{sites_total} sites is impossible"
            )
        return ToolStatus(
            state=int_enum(ProcessState, field_int(values, "state"), labels["state"]),
            mode=int_enum(Mode, field_int(values, "mode"), labels["mode"]),
            sites_done=sites_done,
            sites_total=sites_total,
            job_id=field_str(values, "job_id") or None,
            alarm=alarm,
            results_waiting=bool(values["results_waiting"]),
        )

    async def identify(self) -> ToolIdentity:
        values = await self.read_block(self._map.identity, "identify")
        name = field_str(values, "equipment_class")
        try:
            equipment_class = EquipmentClass(name)
        except ValueError:
            raise ProtocolError(
                f"the tool reports an unknown equipment class {name!r}",
                tool_id=self.tool_id,
                request="identify",
            ) from None
        if equipment_class is not self.equipment_class:
            raise ConfigurationError(
                f"the tool reports class {equipment_class.value}, but it is configured as "
                f"{self.equipment_class.value} (wrong address or wrong map?)",
                tool_id=self.tool_id,
                request="identify",
            )
        return ToolIdentity(
            tool_id=field_str(values, "tool_id"),
            equipment_class=equipment_class,
            manufacturer=field_str(values, "manufacturer"),
            model=field_str(values, "model"),
            serial_number=field_str(values, "serial_number"),
            software_version=field_str(values, "software_version"),
        )

    async def active_recipe(self) -> RecipeInfo | None:
        values = await self.read_block(self._map.active_recipe, "active_recipe")
        if not values["present"]:
            return None
        return RecipeInfo(
            name=field_str(values, "name"),
            version=field_int(values, "version"),
            checksum=field_int(values, "checksum"),
        )

    async def verify_recipe(self, expected: Recipe) -> RecipeInfo:
        want = expected.info()
        actual = await self.active_recipe()
        if actual != want:
            raise RecipeMismatch(expected=want, actual=actual, tool_id=self.tool_id)
        assert actual is not None
        return actual

    async def results(self) -> JobResults | None:
        """The finished job's results, read consistently: the results sequence number is read
        before and after the values and the site map, and the read repeated if it moved."""
        header_block = self._map.results
        sequence_field = header_block.field("sequence")
        for _ in range(_RESULTS_ATTEMPTS):
            header = await self.read_block(header_block, "results")
            if not header["present"]:
                return None
            measured = await self._read_measured()
            rows, cols = field_int(header, "rows"), field_int(header, "cols")
            codes = await self._read_site_map(rows, cols)
            after = await self._session.read_input_registers(
                sequence_field.address, sequence_field.size, request="results"
            )
            if after[0] == header["sequence"]:
                try:
                    site_map = SiteMap(rows, cols, codes)
                except ValueError as exc:
                    raise self.garbage(exc, "results") from exc
                return JobResults(
                    job_id=field_str(header, "job_id"),
                    lot_id=field_str(header, "lot_id"),
                    step=field_str(header, "step"),
                    carrier_id=field_str(header, "carrier_id"),
                    measured=measured,
                    site_map=site_map,
                )
        raise ProtocolError(
            f"the results kept changing while being read ({_RESULTS_ATTEMPTS} attempts)",
            tool_id=self.tool_id,
            request="results",
        )

    async def _read_measured(self) -> dict[str, MeasuredValue]:
        measured: dict[str, MeasuredValue] = {}
        for start, count, fields in self._measured_runs:
            registers = await self._session.read_input_registers(start, count, request="results")
            try:
                for f in fields:
                    raw = f.decode_at(registers, f.address - start)
                    measured[f.name] = self._spec.measured[f.name].check(raw)
            except (CodecError, ValueError) as exc:
                raise self.garbage(exc, "results") from exc
        return measured

    async def _read_site_map(self, rows: int, cols: int) -> tuple[int, ...]:
        area = self._map.outgoing
        sites = rows * cols
        if not 1 <= sites <= area.max_sites:
            raise ProtocolError(
                f"the results' site map is {rows}x{cols}: the map holds 1 to "
                f"{area.max_sites} sites",
                tool_id=self.tool_id,
                request="results",
            )
        registers: list[int] = []
        needed = site_registers(sites)
        for offset in range(0, needed, MAX_READ):
            count = min(MAX_READ, needed - offset)
            registers += await self._session.read_input_registers(
                area.address + offset, count, request="results"
            )
        return unpack_site_codes(registers, sites)
