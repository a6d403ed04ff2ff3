// The holds page: "Release…" on a row opens the signature dialog for that lot (its form
// posts to the lot's release with the lot version the page showed). Escape or Cancel closes.
// A release refused comes back here with the dialog's fields kept (the passwords empty): the
// dialog opens again for that lot.
const dialog = document.getElementById("release-dialog");
const form = document.getElementById("release-dialog-form");
const second = document.getElementById("dialog-second");

for (const button of document.querySelectorAll("button.open-release")) {
  button.addEventListener("click", () => {
    form.action = button.dataset.action;
    document.getElementById("release-dialog-lot").textContent = button.dataset.lot;
    document.getElementById("release-dialog-version").value = button.dataset.version;
    second.hidden = Number(button.dataset.signers) < 2;
    dialog.showModal();
    document.getElementById("dialog-reason").focus();
  });
}
document.getElementById("dialog-cancel").addEventListener("click", () => dialog.close());
const reopen = form.dataset.reopen;
if (reopen) {
  for (const button of document.querySelectorAll("button.open-release")) {
    if (button.dataset.lot === reopen) button.click();
  }
}
