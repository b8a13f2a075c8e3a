// Vite turns a CSS import into a stylesheet file of the build.
declare module '*.css';
