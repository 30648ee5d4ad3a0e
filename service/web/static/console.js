// Progressive enhancement only: the console works without this file.
// "Copy" buttons beside read-only fields (the webhook URL); hidden unless the clipboard is available.
document.addEventListener("DOMContentLoaded", function () {
  if (!navigator.clipboard) return;
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.dataset.copy);
      navigator.clipboard.writeText(source.value).then(function () { button.textContent = "Copied"; });
    });
  });
});
