/** An error in words, announced at once (role alert); nothing when there is none. */
export function Alert({ message }: { message: string | null | undefined }) {
  return message ? (
    <p role="alert" class="error">
      {message}
    </p>
  ) : null;
}
